#!/usr/bin/env bash
# The browser for the end-to-end browser tests (tests/e2e/test_20_browser.py):
# Debian's own chromium, driven by the Python `playwright` package
# (requirements-test.txt) with executable_path=/usr/bin/chromium.
#
# Never `playwright install`: it downloads browser builds of its own, which
# only Debian's archive and PyPI being reachable rules out. Idempotent: a
# second run only checks that chromium starts.
set -Eeuo pipefail

PACKAGES="chromium fonts-liberation fonts-noto-color-emoji"
CHROMIUM=/usr/bin/chromium

log() { printf '[browser-up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in ${PACKAGES}; do
    pkg_installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    log "all present: ${PACKAGES}"
else
    log "installing: ${missing[*]}"
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        apt-get update -q
    fi
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

[ -x "${CHROMIUM}" ] || die "${CHROMIUM} missing after installing chromium"
# The launcher script prints a harmless shell warning on some hosts; the
# version line is the last one.
version="$("${CHROMIUM}" --version 2>/dev/null | tail -n1)" ||
    die "${CHROMIUM} --version failed"
log "${version}"
