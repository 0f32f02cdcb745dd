#!/bin/sh
# Stand-in for a real deploy: prints its steps over a few seconds.
# Replace with your own deploy command. Version 0.0.0 fails, to show a failed run.
# OPSBOT_DEMO_STEP sets the pause between steps in seconds (default 0.7).
set -eu
app="$1"; env="$2"; version="$3"
step="${OPSBOT_DEMO_STEP:-0.7}"
echo "deploying $app $version to $env (execution ${OPSBOT_EXECUTION_ID:-?})"
for s in "fetching artifact $app:$version" "running database migrations" "rolling out to $env: 1/3 instances" "rolling out to $env: 2/3 instances" "rolling out to $env: 3/3 instances"; do
  sleep "$step"
  echo "$s"
  if [ "$version" = "0.0.0" ] && [ "$s" = "running database migrations" ]; then
    echo "error: artifact $app:0.0.0 not found in the registry" >&2
    exit 1
  fi
done
sleep "$step"
echo "$app $version is live in $env"
