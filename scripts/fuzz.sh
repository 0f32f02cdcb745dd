#!/usr/bin/env bash
# Fuzzes the command parser and the config loader for a bounded time each (cargo-fuzz/libFuzzer,
# AddressSanitizer, on stable via RUSTC_BOOTSTRAP=1) and prints one table. Not part of
# scripts/test.sh or CI's default path. Exit 1 if any target crashed (artifacts are listed).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
#   FUZZ_TARGETS="command_parser"  only some targets
#   FUZZ_SANITIZER=none            skip ASan (≈5× faster, no memory-error detection)
#
# Targets, seeds and dictionaries live in fuzz/ (its own cargo workspace); the growing corpus is
# kept in fuzz/corpus/TARGET (git-ignored), crashes go to fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
targets=(${FUZZ_TARGETS:-command_parser config_loader})
sanitizer=${FUZZ_SANITIZER:-address}

say() { printf '\n== %s\n' "$*"; }

# --- what it needs ----------------------------------------------------------------------------
if ! command -v g++ >/dev/null 2>&1; then   # libFuzzer is C++, built by libfuzzer-sys
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing g++"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
  else
    echo "missing: g++ — install it (Debian: sudo apt-get install g++)" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Sanitizers are a nightly flag; RUSTC_BOOTSTRAP=1 lets the stable compiler accept it.
export RUSTC_BOOTSTRAP=1
cd fuzz

# --- build (ASan, else without a sanitizer) ---------------------------------------------------
logs=target/fuzz-logs
mkdir -p "$logs"
say "building the fuzz targets (sanitizer: $sanitizer)"
if ! cargo fuzz build --sanitizer "$sanitizer" 2>"$logs/build.log"; then
  tail -n 20 "$logs/build.log" >&2
  if [ "$sanitizer" = address ]; then
    echo "note: the AddressSanitizer build failed here; fuzzing with --sanitizer none (no memory-error detection)" >&2
    sanitizer=none
    cargo fuzz build --sanitizer none
  else
    exit 1
  fi
fi

# --- run --------------------------------------------------------------------------------------
rows=()
crashed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | sort)
  say "fuzzing $t for ${secs}s"
  TIMEFORMAT='%R %U %S'
  set +e
  { time cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -dict="dict/$t.dict" -timeout=10 -print_final_stats=1 \
      >"$logs/$t.log" 2>&1 ; } 2>"$logs/$t.time"
  rc=$?
  set -e
  read -r wall user sys <"$logs/$t.time"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n 1)
  # Units in the fuzzer's corpus at the end (seeds plus what it kept), as libFuzzer counts them.
  corpus=$(grep -oE 'corp: [0-9]+/[0-9A-Za-z]+' "$logs/$t.log" | tail -n 1 | sed 's/corp: //')
  new=$(comm -13 <(printf '%s\n' "$before") <(find "artifacts/$t" -type f | sort) | grep -E '/(crash|leak|timeout|oom)-' || true)
  n=$(printf '%s' "$new" | grep -c . || true)
  if [ "$rc" != 0 ] && [ "$n" = 0 ]; then
    echo "$t: cargo fuzz exited with $rc and left no artifact; see fuzz/$logs/$t.log" >&2
    tail -n 30 "$logs/$t.log" >&2
    n=1
  fi
  if [ "$n" != 0 ]; then
    crashed+=("$t")
    printf '%s\n' "$new" | sed "s|^|  crash input: fuzz/|" >&2
    grep -m 1 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$logs/$t.log" >&2 || true
  fi
  rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$t" "${wall%.*}" "$cpu" "${execs:-?}" "${rate:-?}" "$corpus" "$n")")
done

# --- report -----------------------------------------------------------------------------------
say "fuzzing summary (sanitizer: $sanitizer, $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1))"
echo "| target | seconds | CPU s | executions | exec/s | corpus | crashes |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo "logs: fuzz/$logs/TARGET.log"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "CRASHES in: ${crashed[*]} — inputs in fuzz/artifacts/TARGET; reproduce with" >&2
  echo "  cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-…" >&2
  exit 1
fi
