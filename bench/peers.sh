#!/usr/bin/env bash
# opsbot side by side with Hubot 3.3.2 and Errbot 6.2.1 through one ngIRCd on this machine, with
# a null bot (bench/ircbench: a raw-socket responder) as the floor, driven by one load client
# (bench/ircbench) and summed up in one table. Every bot answers `!ping` with PONG and
# `!run echo` by running the process `echo hello` (opsbot's runs are executions in its store,
# audited, with job cards, as in production).
#
#   bash bench/peers.sh                    # 3 runs of every bot, ~10 minutes plus installs and builds
#   bash bench/peers.sh --runs 1           # one run (figures without ranges)
#   bash bench/peers.sh --bots "null opsbot"   # only these (null opsbot hubot errbot)
#
# Installs what is missing (ngIRCd, Node.js, Hubot, Errbot: bench/peers/install.sh) under
# target/peers, builds opsbot (release) and ircbench, starts ngIRCd on 127.0.0.1:16667 (no flood
# penalty), then for each run and each bot in turn: start it and time the first answer to
# `!ping`, RSS idle (3 s later), `!ping` one at a time (1000), bursts of 200 and 1000, `!run echo`
# one at a time (200) and a burst of 200, then 10 bursts of 1000 `!ping` (the "after 10k
# commands" RSS), RSS after load. Raw results: target/peers/results.jsonl; the table is printed
# and written to target/peers/table.md. Figures, the machine and what limits them:
# docs/benchmarks.md ("Side by side with Hubot and Errbot").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

runs=3
bots="null opsbot hubot errbot"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --bots) bots=$2; shift 2 ;;
        -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/peers.sh: unknown argument \`$1\` (try --help)" >&2; exit 2 ;;
    esac
done
case "$runs" in '' | *[!0-9]* | 0) echo "bench/peers.sh: --runs needs a positive number" >&2; exit 2 ;; esac
for b in $bots; do
    case "$b" in null | opsbot | hubot | errbot) ;; *) echo "bench/peers.sh: unknown bot \`$b\`" >&2; exit 2 ;; esac
done

dir="$root/target/peers"
port=16667
mkdir -p "$dir/logs"
say() { printf '== %s\n' "$*" >&2; }

# --- what it needs -----------------------------------------------------------------------------
command -v python3 >/dev/null || { echo "bench/peers.sh needs python3 (apt-get install python3)" >&2; exit 1; }
bash bench/peers/install.sh "$dir"
ngircd_bin=$(command -v ngircd || echo /usr/sbin/ngircd)
say "building opsbot (release) and ircbench"
cargo build --release -q -p opsbot
opsbot="$root/target/release/opsbot"
(cd bench/ircbench && cargo build --release -q)
ib="$root/bench/ircbench/target/release/ircbench"

# --- the server ----------------------------------------------------------------------------------
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
# An ngIRCd left by an interrupted run (ngIRCd as root drops to `nobody` and cannot write its own
# pid file here, so the script keeps it).
[ -f "$dir/ngircd.run.pid" ] && kill "$(cat "$dir/ngircd.run.pid")" 2>/dev/null && sleep 0.5
mkdir -p "$dir/conf.d"
sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" bench/peers/ngircd.conf.in > "$dir/ngircd.conf"
"$ngircd_bin" -n -f "$dir/ngircd.conf" > "$dir/logs/ngircd.log" 2>&1 &
pids+=($!)
echo $! > "$dir/ngircd.run.pid"
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

# --- one bot ---------------------------------------------------------------------------------------
# The command that starts BOT in the foreground on CHANNEL as NICK.
start_cmd() {
    local bot=$1 channel=$2 nick=$3
    case "$bot" in
        null) echo "$ib" null --port "$port" --channel "$channel" --nick "$nick" ;;
        opsbot)
            mkdir -p "$dir/opsbot"
            sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir/opsbot|g" -e "s|@CHANNEL@|$channel|g" -e "s|@NICK@|$nick|g" \
                bench/peers/opsbot.toml.in > "$dir/opsbot/opsbot.toml"
            echo "$opsbot" serve --config "$dir/opsbot/opsbot.toml" ;;
        hubot) echo bash "$root/bench/peers/hubot/start.sh" "$dir" "$port" "$channel" "$nick" ;;
        errbot) echo bash "$root/bench/peers/errbot/start.sh" "$dir" "$port" "$channel" "$nick" ;;
    esac
}

# RSS in kB of a process and all its descendants (a bot that starts children is counted whole).
rss_tree() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        with open(f"/proc/{p}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(p))
    except (OSError, IndexError, ValueError):
        pass
total, todo = 0, [root]
while todo:
    p = todo.pop()
    todo += kids.get(p, [])
    try:
        with open(f"/proc/{p}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        pass
print(total)
PY
}

stop_bot() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

results="$dir/results.jsonl"
: > "$results"
record() { # BOT RUN PHASE JSON
    printf '{"bot":"%s","run":%s,"phase":"%s","r":%s}\n' "$1" "$2" "$3" "$4" >> "$results"
}
# BOT RUN PHASE ircbench-args…: one measurement; a failure is recorded (and shown in the table).
measure() {
    local bot=$1 run=$2 phase=$3 out
    shift 3
    if out=$("$ib" "$@" 2> "$dir/logs/last-error.txt"); then
        record "$bot" "$run" "$phase" "$out"
    else
        say "$bot $phase failed: $(cat "$dir/logs/last-error.txt")"
        record "$bot" "$run" "$phase" "$(python3 -c 'import json,sys; print(json.dumps({"error": sys.argv[1]}))' "$(cat "$dir/logs/last-error.txt")")"
    fi
}

one_run() {
    local bot=$1 run=$2 channel="#$1" nick="${1}b" pid out before=""
    [ "$bot" = opsbot ] && [ -f "$dir/opsbot/opsbot.db" ] && before=$(store_counts - x)
    local common=(--port "$port" --channel "$channel" --bot "$nick" --timeout 120)
    # shellcheck disable=SC2046
    rm -f "$dir/$bot.pid"
    if ! out=$("$ib" startup "${common[@]}" --cmd '!ping' --expect PONG --log "$dir/logs/$bot-$run.log" \
        --pidfile "$dir/$bot.pid" -- $(start_cmd "$bot" "$channel" "$nick")); then
        say "$bot did not answer after its start; its output: $dir/logs/$bot-$run.log"
        [ -f "$dir/$bot.pid" ] && stop_bot "$(cat "$dir/$bot.pid")"
        return
    fi
    pid=$(cat "$dir/$bot.pid")
    pids+=("$pid")
    [ "$run" = 0 ] && { stop_bot "$pid"; return; }
    record "$bot" "$run" startup "$out"
    sleep 3
    record "$bot" "$run" rss_idle "{\"kb\":$(rss_tree "$pid")}"
    measure "$bot" "$run" ping_seq seq "${common[@]}" -n 1000 --cmd '!ping' --expect PONG
    measure "$bot" "$run" ping_burst200 burst "${common[@]}" -n 200 --cmd '!ping' --expect PONG
    measure "$bot" "$run" ping_burst1000 burst "${common[@]}" -n 1000 --cmd '!ping' --expect PONG
    measure "$bot" "$run" run_seq seq "${common[@]}" -n 200 --cmd '!run echo' --expect hello
    measure "$bot" "$run" run_burst200 burst "${common[@]}" -n 200 --cmd '!run echo' --expect hello
    for _ in $(seq 10); do
        measure "$bot" "$run" load_burst1000 burst "${common[@]}" -n 1000 --cmd '!ping' --expect PONG
    done
    sleep 1
    record "$bot" "$run" rss_after "{\"kb\":$(rss_tree "$pid")}"
    stop_bot "$pid"
    if [ "$bot" = opsbot ]; then
        # Every `!run echo` is an execution in the store, with its audit records: counted here.
        store_counts "$run" "$before" >> "$results"
    fi
}

# A JSON record of the executions and audit records opsbot's store gained since BEFORE ("E A").
store_counts() {
    python3 - "$dir/opsbot/opsbot.db" "$1" "$2" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = lambda q: db.execute(q).fetchone()[0]
now = (n("SELECT count(*) FROM executions"), n("SELECT count(*) FROM audit"),
       n("SELECT count(*) FROM executions WHERE job = 'echo' AND state = 'succeeded'"))
if sys.argv[2] == "-":
    print(f"{now[0]} {now[1]} {now[2]}")
else:
    e, a, ok = (int(x) for x in sys.argv[3].split())
    print(json.dumps({"bot": "opsbot", "run": int(sys.argv[2]), "phase": "store",
                      "r": {"executions": now[0] - e, "succeeded": now[2] - ok, "audit": now[1] - a}}))
PY
}

say "a first start of each bot (creates its state; not counted)"
for bot in $bots; do
    [ "$bot" = opsbot ] && rm -f "$dir/opsbot/opsbot.db"*
    one_run "$bot" 0
done
for run in $(seq "$runs"); do
    for bot in $bots; do
        say "run $run/$runs: $bot"
        # opsbot starts each run on the store of the runs before (as after a restart).
        one_run "$bot" "$run"
    done
done

python3 bench/peers/table.py "$results" "$runs" | tee "$dir/table.md"
