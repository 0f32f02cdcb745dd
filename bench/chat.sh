#!/usr/bin/env bash
# Chat figures per platform with a release build of opsbot between real servers (ngIRCd,
# Synapse, Prosody) and the local fakes of Slack and Mattermost (Slack's also gives Socket Mode
# event → ack latency): reply latency one at a time (20 `!status N`) and in a burst of 200
# (p50/p99 from the first send, replies/s), and the RSS of one `opsbot serve` with all three
# adapters connected (plus its web server). The measurement is the conformance suite itself
# (crates/opsbot/tests/it/conformance.rs), run with OPSBOT_TEST_BIN pointing at the release
# binary; it writes target/test-artefacts/chat-*.txt, printed here.
#
#   bash bench/chat.sh          # servers installed as scripts/test.sh does; release build with XMPP
#
# The test users are the testkit's own clients (Rust, one connection each), so the figures
# include their side: the same client measures every platform.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p opsbot --features xmpp
export OPSBOT_TEST_BIN="$PWD/target/release/opsbot"
export OPSBOT_CHAT_VENV="${OPSBOT_CHAT_VENV:-$PWD/target/chat-venv}"
rm -f target/test-artefacts/chat-*.txt
# One platform at a time, so they do not share the two cores.
for t in irc_conformance matrix_conformance xmpp_conformance slack_conformance mattermost_conformance three_platforms_in_one_process; do
  cargo nextest run -p opsbot --features xmpp --no-fail-fast -E "test(conformance::$t)" >/dev/null 2>&1 || echo "($t failed; see cargo nextest run -p opsbot --features xmpp $t)"
done
echo "binary: $OPSBOT_TEST_BIN ($(du -h "$OPSBOT_TEST_BIN" | cut -f1)); $(nproc) cores; $(date -u +%F)"
for f in target/test-artefacts/chat-figures-*.txt target/test-artefacts/chat-rss.txt; do
  [ -f "$f" ] && { echo; cat "$f"; }
done
