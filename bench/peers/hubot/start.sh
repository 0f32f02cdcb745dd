#!/usr/bin/env bash
# Hubot 3.3.2 + hubot-irc peer for the IRC benchmark, in the foreground (logs to stdout/stderr).
#   bench/peers/hubot/start.sh DIR PORT CHANNEL NICK
# DIR is the directory given to bench/peers/install.sh (Hubot lives in DIR/hubot).
# Connects to 127.0.0.1:PORT, joins CHANNEL as NICK; no flood throttling, no HTTP server.
set -euo pipefail
if [ "$#" -ne 4 ]; then
    echo "usage: $0 DIR PORT CHANNEL NICK" >&2
    exit 2
fi
dir=$1 port=$2 channel=$3 nick=$4
home="$dir/hubot"
if [ ! -x "$home/node_modules/.bin/hubot" ]; then
    echo "$0: no Hubot in $home; run: bash bench/peers/install.sh $dir" >&2
    exit 1
fi
cd "$home"
export HUBOT_IRC_SERVER=127.0.0.1 HUBOT_IRC_PORT="$port" HUBOT_IRC_NICK="$nick" \
    HUBOT_IRC_ROOMS="$channel" HUBOT_IRC_UNFLOOD=false HUBOT_LOG_LEVEL=info
# No password, no NickServ, no SSL: plain loopback IRC.
unset HUBOT_IRC_PASSWORD HUBOT_IRC_NICKSERV_PASSWORD HUBOT_IRC_USESSL HUBOT_IRC_SERVER_FAKE_SSL \
    HUBOT_IRC_CONNECT_COMMAND HUBOT_IRC_DEBUG || true
export PATH="$home/node_modules/.bin:$PATH"
exec node_modules/.bin/hubot --adapter irc --name "$nick" --disable-httpd
