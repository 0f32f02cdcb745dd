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
command -v ngircd >/dev/null 2>&1 || [ -x /usr/sbin/ngircd ] || need_apt+=(ngircd)   # IRC server for the adapter tests
command -v prosody >/dev/null 2>&1 || need_apt+=(prosody)      # XMPP server for the adapter tests
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
# The chat side: Synapse (a Matrix homeserver) and the client libraries the black-box tests
# drive the bot with (irc, matrix-nio, slixmpp), pinned, in a venv of their own.
chat_pins="matrix-synapse==1.163.2 matrix-nio==0.26.0 slixmpp==1.17.0 irc==20.5.0 slack_sdk==3.39.0 mattermostdriver==7.3.2"
chat_venv="${CARGO_TARGET_DIR:-target}/chat-venv"
if [ "$(cat "$chat_venv/.pins" 2>/dev/null)" != "$chat_pins" ]; then
  say "installing $chat_pins into $chat_venv"
  mkdir -p "$(dirname "$chat_venv")"
  python3 -m venv --clear "$chat_venv"
  # shellcheck disable=SC2086
  "$chat_venv/bin/pip" install -q --disable-pip-version-check $chat_pins
  echo "$chat_pins" > "$chat_venv/.pins"
fi
OPSBOT_CHAT_VENV="$(cd "$chat_venv" && pwd)"
export OPSBOT_CHAT_VENV
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
  if cargo tree --workspace --all-features -e normal,build,dev -i "$c" >/dev/null 2>&1; then
    echo "$c is in the dependency tree:" >&2
    cargo tree --workspace --all-features -e normal,build,dev -i "$c" >&2
    exit 1
  fi
done

say "cargo clippy"
cargo clippy --all-targets --all-features --locked -- -D warnings

say "the adapters build with each platform alone and with none (features are opt-in/opt-out)"
for f in "" irc matrix xmpp slack mattermost; do
  cargo check -q -p opsbot-adapters --locked --no-default-features ${f:+--features "$f"}
done

say "tests"
# --all-features: the opt-in adapters (XMPP) are tested too.
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
