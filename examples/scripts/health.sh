#!/bin/sh
# Stand-in for a health check: answers per service; the worker is degraded (exit 1).
set -eu
case "$1" in
  api)    echo "api: healthy — 200 OK in 12 ms, 3/3 instances ready" ;;
  web)    echo "web: healthy — 200 OK in 31 ms, 2/2 instances ready" ;;
  db)     echo "db: healthy — primary accepting writes, replica lag 0.2 s" ;;
  worker) echo "worker: degraded — 1/3 instances ready, queue depth 1532" >&2; exit 1 ;;
  *)      echo "unknown service $1" >&2; exit 2 ;;
esac
