// Description:
//   opsbot benchmark peer: "!run echo" -> runs the process `echo hello` (argv, no shell)
//   and replies with its output.
const { execFile } = require('child_process');

module.exports = (robot) => {
  robot.hear(/^!run echo\s*$/i, (res) => {
    execFile('echo', ['hello'], { timeout: 10000 }, (err, stdout, stderr) => {
      if (err) {
        res.send(`run failed: ${err.message} ${String(stderr).trim()}`.trim());
        return;
      }
      res.send(String(stdout).trim());
    });
  });
};
