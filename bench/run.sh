#!/usr/bin/env bash
# Runs opsbot's benchmarks and prints one markdown summary: criterion's medians, then the
# tables of the benches that print their own.
#
#   bash bench/run.sh           # full run: about 8 minutes on 2 cores, plus the builds
#   bash bench/run.sh --quick   # 1 s warm-up, 3 s measurement, 1 run, 1,000 sleepers: about 5 minutes
#
# Criterion benches: crates/opsbot-engine/benches/engine.rs (one engine step over a 500-job
# catalog, the store calls inside it, the grammar alone), crates/opsbot-worker/benches/throughput.rs
# (trivial `true` jobs end to end through the worker, file SQLite),
# crates/opsbot-nlu/benches/nlu.rs (natural language per utterance, example and 500-job catalogs)
# and crates/opsbot-store/benches/store.rs (store calls and history queries at 1,000,000
# executions; the first run generates that database once, ~1 minute, cached in target/bench-data).
# Benches that print their own table: crates/opsbot-worker/benches/output.rs (output ingestion
# MB/s, 10 and 130 MB) and crates/opsbot-worker/benches/sleepers.rs (10,000 concurrent sleeping
# executions: ramp-up, memory, CPU while they sleep, drain; 1,000 with --quick).
# Accuracy and p50/p99 over the labelled sets: bench/nlu/eval.sh.
#
# The first table lists only criterion results written by this run. "median" is criterion's
# median of its per-sample mean times (an estimate of the typical time per step, not a per-call
# p50). The tables of the other benches follow it as they printed them.
set -euo pipefail

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

extra=()
own=()
for arg in "$@"; do
    case "$arg" in
        --quick)
            extra=(-- --warm-up-time 1 --measurement-time 3)
            own=(-- --quick)
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "bench/run.sh: unknown argument \`$arg\` (try --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
marker=$(mktemp)
tables=$(mktemp -d)
trap 'rm -rf "$marker" "$tables"' EXIT
# Results older than this marker are from earlier runs and are left out of the table.
sleep 1

cargo bench -p opsbot-engine --bench engine ${extra[@]+"${extra[@]}"}
cargo bench -p opsbot-worker --bench throughput ${extra[@]+"${extra[@]}"}
cargo bench -p opsbot-nlu --bench nlu ${extra[@]+"${extra[@]}"}
cargo bench -p opsbot-store --bench store ${extra[@]+"${extra[@]}"}
cargo bench -p opsbot-worker --bench output ${own[@]+"${own[@]}"} | tee "$tables/1-output.txt"
cargo bench -p opsbot-worker --bench sleepers ${own[@]+"${own[@]}"} | tee "$tables/2-sleepers.txt"

cpus=$(nproc)
model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
rustc_v=$(rustc -V)

echo
echo "## opsbot benchmarks$([ ${#extra[@]} -gt 0 ] && echo ' (--quick)')"
echo
echo "machine: ${cpus} CPUs, ${model:-unknown CPU}; ${rustc_v}"
echo
python3 - "$target_dir/criterion" "$marker" <<'PY'
import json
import os
import re
import sys

root, marker = sys.argv[1], sys.argv[2]
since = os.path.getmtime(marker)

# Targets from the project's brief: one engine step p50 < 20 µs; ≥ 500 trivial runs/s.
def target(group):
    if group.startswith("engine_step"):
        return ("< 20 µs", lambda us, rps: us < 20)
    if group.startswith("worker_true_runs"):
        return ("≥ 500 runs/s", lambda us, rps: rps is not None and rps >= 500)
    return ("", None)

order = ["engine_step_memory", "engine_step_file_wal", "understand", "store_memory", "store_file_wal", "store_1m", "baseline", "worker_true_runs"]

def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]

rows = []
for dirpath, _dirs, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files or "benchmark.json" not in files:
        continue
    est_path = os.path.join(dirpath, "estimates.json")
    if os.path.getmtime(est_path) < since:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    with open(est_path) as f:
        est = json.load(f)
    median_ns = est["median"]["point_estimate"]
    lo = est["median"]["confidence_interval"]["lower_bound"]
    hi = est["median"]["confidence_interval"]["upper_bound"]
    elements = (meta.get("throughput") or {}).get("Elements")
    rps = elements * 1e9 / median_ns if elements else None
    group = meta["group_id"]
    rows.append((group, meta["full_id"], median_ns / 1000, lo / 1000, hi / 1000, rps))

if not rows:
    print("no results from this run were found under", root)
    sys.exit(1)

rows.sort(key=lambda r: (order.index(r[0]) if r[0] in order else len(order), natural(r[1])))

def us(x):
    return f"{x:,.2f}" if x < 10 else f"{x:,.1f}"

print("| benchmark | median (µs) | 95% CI of median (µs) | runs/s | target | meets |")
print("|---|---:|---:|---:|---|---|")
for group, full_id, med, lo, hi, rps in rows:
    text, ok = target(group)
    meets = "" if ok is None else ("yes" if ok(med, rps) else "**no**")
    rate = f"{rps:,.0f}" if rps else ""
    print(f"| {full_id} | {us(med)} | {us(lo)} – {us(hi)} | {rate} | {text} | {meets} |")
PY

# The tables the output and sleepers benches printed at their end: from the caption (the line
# before the table) to the table's last row.
for f in "$tables"/*.txt; do
    echo
    awk '/^\|/ { if (!intable) { print prev; intable = 1 } print; next } { if (intable) exit; prev = $0 }' "$f"
done
