#!/usr/bin/env bash
# Scores opsbot's natural-language layer on the labelled sets, with a release build:
# accuracy, must-not-run cases that would run, a confidence table, and p50/p99 per utterance
# with the example catalog and a generated 500-job one.
#
#   bash bench/nlu/eval.sh             # dev.tsv (tuned on) and test.tsv (held out)
#   bash bench/nlu/eval.sh FILE.tsv    # one file of your own (format: see dev.tsv's header)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release -p opsbot >&2
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(bench/nlu/dev.tsv bench/nlu/test.tsv)
status=0
for f in "${files[@]}"; do
    ./target/release/opsbot understand --config examples/opsbot.toml --eval "$f" --jobs 500 | sed '/^not right/,$d' || status=$?
    echo
done
exit $status
