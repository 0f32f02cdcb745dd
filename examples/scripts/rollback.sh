#!/bin/sh
# Stand-in for rolling an app back to its previous release.
set -eu
app="$1"; env="$2"
step="${OPSBOT_DEMO_STEP:-0.7}"
echo "finding the previous release of $app in $env"
sleep "$step"
echo "previous release: 1.4.1"
echo "rolling $app back to 1.4.1 in $env"
sleep "$step"
echo "$app in $env is back on 1.4.1"
