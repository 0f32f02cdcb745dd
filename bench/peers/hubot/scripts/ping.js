// Description:
//   opsbot benchmark peer: "!ping" heard in the channel -> "PONG".
module.exports = (robot) => {
  robot.hear(/^!ping\s*$/i, (res) => res.send('PONG'));
};
