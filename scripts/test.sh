#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format check, lints,
# dependency policy and every test. Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# --- what the suite needs ---------------------------------------------------------------------
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)   # bundled SQLite is C
command -v pkill >/dev/null 2>&1 || need_apt+=(procps)          # used by a lifecycle test to clean up
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} — install them (Debian: sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true

# --- checks -----------------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check

say "dependency policy: rustls with ring only — no aws-lc-sys, no openssl-sys"
for c in aws-lc-sys openssl-sys; do
  if cargo tree -e normal,build -i "$c" >/dev/null 2>&1; then
    echo "$c is in the dependency tree:" >&2
    cargo tree -e normal,build -i "$c" >&2
    exit 1
  fi
done

say "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

say "tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
