#!/bin/sh
# Stand-in for fetching a service's log tail (e.g. `journalctl -u SERVICE -n LINES`).
set -eu
service="$1"; lines="$2"
i=1
while [ "$i" -le "$lines" ]; do
  printf '2026-11-23T10:%02d:%02dZ %s[%d]: GET /health 200 %dms\n' $(( (i / 60) % 60 )) $(( i % 60 )) "$service" 4242 $(( (i * 7) % 90 + 3 ))
  i=$((i + 1))
done
