#!/usr/bin/env bash
# Errbot 6.2.1 (IRC backend) peer for the IRC benchmark, in the foreground (logs to stdout/stderr).
#   bench/peers/errbot/start.sh DIR PORT CHANNEL NICK
# DIR is the directory given to bench/peers/install.sh (venv in DIR/errbot-venv, data in
# DIR/errbot-data). Connects to 127.0.0.1:PORT, joins CHANNEL as NICK; no flood throttling.
set -euo pipefail
if [ "$#" -ne 4 ]; then
    echo "usage: $0 DIR PORT CHANNEL NICK" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -x "$1/errbot-venv/bin/errbot" ]; then
    echo "$0: no Errbot in $1/errbot-venv; run: bash bench/peers/install.sh $1" >&2
    exit 1
fi
dir=$(cd "$1" && pwd)
mkdir -p "$dir/errbot-data"
export PEER_DIR="$dir" PEER_PORT="$2" PEER_CHANNEL="$3" PEER_NICK="$4"
# The plugin is loaded from the repository; keep __pycache__ out of it.
export PYTHONDONTWRITEBYTECODE=1
cd "$dir/errbot-data"
exec "$dir/errbot-venv/bin/errbot" -c "$here/config.py"
