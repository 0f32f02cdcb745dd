#!/bin/sh
# Stand-in for restarting a service (e.g. `ssh HOST sudo systemctl restart SERVICE`).
set -eu
service="$1"; host="$2"
step="${OPSBOT_DEMO_STEP:-0.7}"
echo "stopping $service on $host"
sleep "$step"
echo "starting $service on $host"
sleep "$step"
echo "$service on $host is up (pid $$)"
