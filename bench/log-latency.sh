#!/usr/bin/env bash
# Live log latency of the web console: time from a line printed by a job to that line appearing
# in pre#log of its execution page in headless Chromium. The job (`ticker`, a test job) prints
# `tick N EPOCH_MS` with its own wall clock every 170-290 ms; a MutationObserver in the page
# records Date.now() when each line appears. Same host, same clock. Prints a markdown table.
#
#   bash bench/log-latency.sh [LINES]     # default 100 lines (~25 s); release build
#
# Needs chromium and chromium-driver (installed with apt if missing). The measurement itself is
# the test `browser::measure_log_latency` in crates/opsbot/tests/it/browser.rs, which runs only
# with OPSBOT_MEASURE=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lines=${1:-100}
command -v chromedriver >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! OPSBOT_MEASURE=1 OPSBOT_MEASURE_LINES="$lines" OPSBOT_REQUIRE_SERVERS=1 \
    cargo test --release -q -p opsbot --test it -- browser::measure_log_latency --exact --nocapture >"$out" 2>&1; then
  cat "$out" >&2
  exit 1
fi
sed -n '/^live log latency/,/not counted/p' "$out"
