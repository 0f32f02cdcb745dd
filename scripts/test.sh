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
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)  # browser tests
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)       # Schemathesis runs in a venv
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
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
# Schemathesis (API fuzzing from the OpenAPI document) from PyPI, in a venv inside target/.
st_version=4.32.5
venv="${CARGO_TARGET_DIR:-target}/venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$st_version"; then
  say "installing Schemathesis $st_version into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$st_version"
fi
OPSBOT_SCHEMATHESIS="$(cd "$venv/bin" && pwd)/st"
OPSBOT_CHROMEDRIVER="$(command -v chromedriver)"
export OPSBOT_SCHEMATHESIS OPSBOT_CHROMEDRIVER
# In CI a missing browser or Schemathesis fails those tests instead of skipping them.
if [ "${CI:-}" = true ]; then export OPSBOT_REQUIRE_SERVERS="${OPSBOT_REQUIRE_SERVERS:-1}"; fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt || true

# --- checks -----------------------------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check

say "dependency policy: rustls with ring only — no aws-lc-sys, no openssl-sys (tests included)"
for c in aws-lc-sys openssl-sys; do
  if cargo tree --workspace -e normal,build,dev -i "$c" >/dev/null 2>&1; then
    echo "$c is in the dependency tree:" >&2
    cargo tree --workspace -e normal,build,dev -i "$c" >&2
    exit 1
  fi
done

say "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

say "tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
