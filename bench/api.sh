#!/usr/bin/env bash
# REST API figures of `opsbot serve`: idle RSS, and GET /api/v1/executions?limit=50 under wrk
# with 1,000,000 executions in SQLite. Prints a markdown table.
#
#   bash bench/api.sh [ROWS]      # default 1000000; needs python3, curl and wrk (installed with apt if missing)
#   OPSBOT_BIN=path/to/opsbot bash bench/api.sh   # measure a given binary
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
# OPSBOT_BIN measures a binary built elsewhere; by default the release build of this tree.
if [ -z "${OPSBOT_BIN:-}" ]; then cargo build --release -q; fi
bin=${OPSBOT_BIN:-target/release/opsbot}
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
db="$work/opsbot.db"
token=$("$bin" --config examples/opsbot.toml --db "$db" token create --user bench 2>/dev/null)
python3 - "$db" "$rows" <<'PY'
import json, sqlite3, sys, time
db, n = sqlite3.connect(sys.argv[1]), int(sys.argv[2])
jobs = ["deploy", "restart", "rollback", "health", "disk", "logs", "scale"]
states = ["succeeded"] * 8 + ["failed", "cancelled"]
base = int(time.time() * 1000) - n * 1000
batch = []
for i in range(n):
    c, st = base + i * 1000, states[i % 10]
    batch.append((jobs[i % 7], json.dumps({"app": "web", "env": "staging"}), "terminal", f"user{i % 50}", f"user{i % 50}",
                  "terminal", "shell", st, c, c + 10, c + 5000, 0 if st == "succeeded" else 1, 4990, 30, 4000, "w:1"))
    if len(batch) == 100_000 or i == n - 1:
        db.executemany("INSERT INTO executions (job, params, requested_by_platform, requested_by_id, requester_name, place_platform,"
                       " place_channel, state, created_at, started_at, finished_at, exit_code, duration_ms, cpu_ms, max_rss_kb, worker)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
        batch = []
db.commit()
PY
port=18090
"$bin" --config examples/opsbot.toml --db "$db" --log error serve --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "| query | p50 | p99 | requests/s |"
echo "|---|---:|---:|---:|"
for q in "limit=50" "limit=50&job=deploy" "limit=50&state=failed" "limit=50&user=terminal:user7"; do
  out=$(wrk -t2 -c8 -d10s --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/executions?$q")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out"); p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  echo "| \`$q\` | $p50 | $p99 | $rps |"
done
echo
echo "executions: $rows; idle RSS of opsbot serve: $((idle / 1024)) MiB ($idle kB); after the load: $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MiB"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk and opsbot share them"
