#!/usr/bin/env bash
# The browser for the end-to-end browser tests (tests/e2e/test_20_browser.py):
# Debian's own chromium, driven by the Python `playwright` package
# (requirements-test.txt) with executable_path=/usr/bin/chromium.
#
# Never `playwright install`: it downloads browser builds of its own, which
# only Debian's archive and PyPI being reachable rules out. Idempotent: a
# second run only checks that chromium starts.
set -Eeuo pipefail

LOG_TAG=browser-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, apt_install

PACKAGES="chromium fonts-liberation fonts-noto-color-emoji"
CHROMIUM=/usr/bin/chromium

need_root
export DEBIAN_FRONTEND=noninteractive

# shellcheck disable=SC2086  # a list of names
apt_install ${PACKAGES}

[ -x "${CHROMIUM}" ] || die "${CHROMIUM} missing after installing chromium"
# The launcher script prints a harmless shell warning on some hosts; the
# version line is the last one.
version="$("${CHROMIUM}" --version 2>/dev/null | tail -n1)" ||
    die "${CHROMIUM} --version failed"
log "${version}"
