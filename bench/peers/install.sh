#!/usr/bin/env bash
# Installs the peer bots for the side-by-side IRC benchmark into DIR; skips what is already there.
#
#   bash bench/peers/install.sh DIR        # e.g. target/peers
#
#   ngIRCd            apt package `ngircd` (needs root and apt-get)
#   Node.js + npm     Debian packages `nodejs` `npm`, only if `node`/`npm` are missing
#   python3 venv      Debian package `python3-venv`, only if `python3 -m venv` cannot work
#   Hubot             DIR/hubot: bench/peers/hubot/{package.json,package-lock.json,scripts} + `npm ci`
#   Errbot            DIR/errbot-venv: errbot==6.2.1 irc==20.5.0 (errbot[irc]) with pip
#
# Needs only the apt, npm and PyPI registries. One line per item: `installed`, `updated` or
# `skipped`. Exits non-zero with a message when something cannot be installed.
set -euo pipefail

ERRBOT_VERSION=6.2.1
IRC_VERSION=20.5.0

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

if [ "$#" -ne 1 ] || [ -z "$1" ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1" || die "cannot create $1"
dir=$(cd "$1" && pwd)

# --- system packages (apt) ---------------------------------------------------------------
deb_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

apt_missing=()
if deb_installed ngircd; then
    echo "skipped   ngircd $(dpkg-query -W -f='${Version}' ngircd) (apt package already installed)"
else
    apt_missing+=(ngircd)
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    echo "skipped   node $(node --version) npm $(npm --version 2>/dev/null) (already on PATH)"
else
    command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
fi
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3)
if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "skipped   python3 venv ($(python3 --version 2>&1), venv and ensurepip present)"
else
    apt_missing+=(python3-venv)
fi

if [ "${#apt_missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing system packages: ${apt_missing[*]}. Install them as root, e.g.
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${apt_missing[*]}
then run this script again."
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null ||
        die "apt-get install ${apt_missing[*]} failed"
    for p in "${apt_missing[@]}"; do
        echo "installed $p $(dpkg-query -W -f='${Version}' "$p") (apt)"
    done
    # Debian starts ngIRCd as a system service on port 6667 right after installing it. The
    # benchmark runs its own loopback-only server, so stop and disable the one we just added.
    if [[ " ${apt_missing[*]} " == *" ngircd "* ]]; then
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now ngircd >/dev/null 2>&1 || true
        elif [ -x /etc/init.d/ngircd ]; then
            /etc/init.d/ngircd stop >/dev/null 2>&1 || true
            update-rc.d ngircd disable >/dev/null 2>&1 || true
        fi
        echo "stopped   ngircd system service (the benchmark starts its own from ngircd.conf.in)"
    fi
fi
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || die "node/npm still missing"

# --- Hubot ---------------------------------------------------------------------------------
hubot="$dir/hubot"
mkdir -p "$hubot/scripts"
changed=0
for f in package.json package-lock.json; do
    if ! cmp -s "$here/hubot/$f" "$hubot/$f"; then
        cp "$here/hubot/$f" "$hubot/$f"
        changed=1
    fi
done
# The scripts Hubot loads are exactly the committed ones.
for f in "$hubot"/scripts/*; do
    [ -e "$f" ] || continue
    [ -e "$here/hubot/scripts/$(basename "$f")" ] || { rm -f "$f"; changed=1; }
done
for f in "$here"/hubot/scripts/*.js; do
    if ! cmp -s "$f" "$hubot/scripts/$(basename "$f")"; then
        cp "$f" "$hubot/scripts/"
        changed=1
    fi
done
stamp="$hubot/.npm-ci.sha256"
want=$(sha256sum "$here/hubot/package-lock.json" | cut -d' ' -f1)
if [ -x "$hubot/node_modules/.bin/hubot" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    if [ "$changed" = 1 ]; then
        echo "updated   hubot scripts in $hubot/scripts (node_modules up to date)"
    else
        echo "skipped   hubot $(cd "$hubot" && node -p 'require("./node_modules/hubot/package.json").version' \
            2>/dev/null || echo '?') in $hubot (lock file unchanged)"
    fi
else
    rm -f "$stamp"
    # Optional native deps of irc@0.5.2 (iconv, node-icu-charset-detector) need a compiler and
    # are only used for non-UTF-8 charsets; leave them out.
    (cd "$hubot" && npm ci --no-audit --no-fund --omit=optional --loglevel=error >/dev/null) ||
        die "npm ci in $hubot failed"
    echo "$want" >"$stamp"
    echo "installed hubot $(cd "$hubot" && node -p 'require("./node_modules/hubot/package.json").version') \
hubot-irc $(cd "$hubot" && node -p 'require("./node_modules/hubot-irc/package.json").version') \
irc $(cd "$hubot" && node -p 'require("./node_modules/irc/package.json").version') in $hubot (npm ci)"
fi

# --- Errbot --------------------------------------------------------------------------------
venv="$dir/errbot-venv"
have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("errbot"), m.version("irc"))' \
    2>/dev/null || true)
if [ "$have" = "$ERRBOT_VERSION $IRC_VERSION" ]; then
    echo "skipped   errbot $ERRBOT_VERSION irc $IRC_VERSION in $venv (already installed)"
else
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        python3 -m venv --clear "$venv" || die "python3 -m venv $venv failed (is python3-venv installed?)"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "errbot[irc]==$ERRBOT_VERSION" "irc==$IRC_VERSION" || die "pip install errbot[irc] into $venv failed"
    echo "installed errbot $ERRBOT_VERSION irc $IRC_VERSION in $venv (pip, $("$venv/bin/python" --version 2>&1))"
fi
