#!/usr/bin/env bash
# Prometheus for the metrics end-to-end test (tests/e2e/test_21_metrics.py):
# Debian's own `prometheus` package. The package's service is never started
# (apt_install's policy-rc.d; no systemd here either): the test runs its own
# `prometheus` with a scrape configuration for the hub, on 127.0.0.1, with
# its data in a temporary directory. Idempotent: a second run only checks
# that the binary runs.
set -Eeuo pipefail

LOG_TAG=prometheus-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, apt_install

PROMETHEUS=/usr/bin/prometheus

need_root
export DEBIAN_FRONTEND=noninteractive

apt_install prometheus

[ -x "${PROMETHEUS}" ] || die "${PROMETHEUS} missing after installing prometheus"
# the package's own instance, if something started it anyway, is not the
# test's (that one listens on a port of its own)
version="$("${PROMETHEUS}" --version 2>&1 | head -n1)" || die "${PROMETHEUS} --version failed"
log "${version}"
