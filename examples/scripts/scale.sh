#!/bin/sh
# Stand-in for scaling an app (e.g. `kubectl scale deploy/APP --replicas=N`).
set -eu
app="$1"; replicas="$2"
step="${OPSBOT_DEMO_STEP:-0.7}"
echo "scaling $app to $replicas replicas"
sleep "$step"
echo "$app: $replicas/$replicas replicas ready"
