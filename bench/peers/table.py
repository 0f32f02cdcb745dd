#!/usr/bin/env python3
"""Sums up bench/peers.sh's results (JSON lines) in one markdown table.

Each cell is the median over the runs, with the range (min–max) when there is more than one.
"opsbot : best peer" compares opsbot with the better of Hubot and Errbot on that figure
(times as "N× faster", rates as "N× more", memory as "N× less"); "opsbot vs null" is opsbot's
figure as a share of the null bot's (100 % = the floor; rates and times alike, higher is better).

usage: table.py RESULTS.jsonl RUNS
"""
import json
import statistics
import sys

BOTS = ["null", "opsbot", "hubot", "errbot"]
PEERS = ["hubot", "errbot"]

# (label, phase, field, kind): kind "time" (lower is better), "rate" (higher), "mem" (lower, kB)
ROWS = [
    ("start → first `!ping` answer (ms)", "startup", "first_reply_ms", "time"),
    ("RSS idle (MiB)", "rss_idle", "kb", "mem"),
    ("`!ping` one at a time, 1000: p50 (ms)", "ping_seq", "p50_ms", "time"),
    ("… p95 (ms)", "ping_seq", "p95_ms", "time"),
    ("… p99 (ms)", "ping_seq", "p99_ms", "time"),
    ("… answers/s", "ping_seq", "per_s", "rate"),
    ("`!ping` burst of 200: all answered (ms)", "ping_burst200", "all_ms", "time"),
    ("`!ping` burst of 1000: all answered (ms)", "ping_burst1000", "all_ms", "time"),
    ("`!run echo` one at a time, 200: p50 (ms)", "run_seq", "p50_ms", "time"),
    ("… p99 (ms)", "run_seq", "p99_ms", "time"),
    ("… runs/s", "run_seq", "per_s", "rate"),
    ("`!run echo` burst of 200: all answered (ms)", "run_burst200", "all_ms", "time"),
    ("RSS after ~12k commands (MiB)", "rss_after", "kb", "mem"),
]


def load(path):
    data = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            data.setdefault((rec["bot"], rec["phase"]), []).append(rec["r"])
    return data


def values(data, bot, phase, field):
    return [r[field] for r in data.get((bot, phase), []) if field in r and r[field] == r[field]]


def fmt(x, kind):
    if kind == "mem":
        x = x / 1024
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def cell(vs, kind):
    if not vs:
        return "—"
    m = statistics.median(vs)
    if len(vs) == 1:
        return fmt(m, kind)
    return f"{fmt(m, kind)} ({fmt(min(vs), kind)}–{fmt(max(vs), kind)})"


def better(a, b, kind):
    """How many times `a` is better than `b` (> 1: a wins)."""
    if kind == "rate":
        return a / b if b else float("nan")
    return b / a if a else float("nan")


def main():
    path, runs = sys.argv[1], sys.argv[2]
    data = load(path)
    present = [b for b in BOTS if any(k[0] == b for k in data)]
    print(f"## IRC, one ngIRCd, {runs} run(s) each: median (range)\n")
    head = "| figure | " + " | ".join(present)
    cols = "|---|" + "---:|" * len(present)
    peers = [p for p in PEERS if p in present]
    if "opsbot" in present and peers:
        head += " | opsbot : best peer"
        cols += "---:|"
    if "opsbot" in present and "null" in present:
        head += " | opsbot vs null"
        cols += "---:|"
    print(head + " |")
    print(cols)
    for label, phase, field, kind in ROWS:
        row = [cell(values(data, b, phase, field), kind) for b in present]
        med = {b: statistics.median(v) for b in present if (v := values(data, b, phase, field))}
        if "opsbot" in present and peers:
            best = [med[p] for p in peers if p in med]
            if "opsbot" in med and best:
                pick = max(best) if kind == "rate" else min(best)
                row.append(f"{better(med['opsbot'], pick, kind):.1f}×")
            else:
                row.append("—")
        if "opsbot" in present and "null" in present:
            if kind == "mem" or "opsbot" not in med or "null" not in med:
                row.append("")
            else:
                row.append(f"{100 * better(med['opsbot'], med['null'], kind):.0f} %")
        print(f"| {label} | " + " | ".join(row) + " |")
    for (bot, phase), recs in sorted(data.items()):
        for r in recs:
            if "error" in r:
                print(f"\n**{bot} {phase} failed:** {r['error'].strip()}")
    store = data.get(("opsbot", "store"), [])
    if store:
        print()
        for s in store:
            print(
                f"opsbot's store, one run: {s['executions']} executions ({s['succeeded']} succeeded) "
                f"and {s['audit']} audit records for the 400 `!run echo` sent."
            )


if __name__ == "__main__":
    main()
