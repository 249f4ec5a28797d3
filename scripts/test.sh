#!/usr/bin/env bash
# The project's one test command:  bash scripts/test.sh [pytest args...]
#
#   1. scripts/env-up.sh: docker engine, single-node swarm, stand-in images
#      scripts/browser-up.sh: Debian's chromium (tests/e2e/test_20_browser.py)
#      scripts/db-up.sh: PostgreSQL + MariaDB on the host (tests/e2e/test_00_databases.py)
#      scripts/prometheus-up.sh: Debian's prometheus (tests/e2e/test_21_metrics.py)
#      scripts/registry-up.sh: Debian's docker-registry on 127.0.0.1:5000 with
#        the stand-in images pushed (tests/e2e/test_26_registry.py)
#   2. a virtualenv at .venv with requirements-test.txt
#   3. pytest tests -v "$@"  (unit tests and the real-swarm e2e tests;
#      tests/e2e_cluster brings up scripts/cluster.sh's 3-node swarm itself
#      and takes it down at the end)
#
# Exits with pytest's status; "no tests collected" (pytest's 5) is a failure.
# Example: bash scripts/test.sh -k persistence
set -Eeuo pipefail

LOG_TAG=test.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # log, REPO_ROOT
cd "${REPO_ROOT}"

t0=$SECONDS
bash scripts/env-up.sh
bash scripts/browser-up.sh  # Debian's chromium for the browser tests
bash scripts/db-up.sh  # PostgreSQL and MariaDB for the database tests
bash scripts/prometheus-up.sh  # Debian's prometheus for the metrics test
if [ "${JHSWARM_USE_REAL_IMAGES:-0}" != 1 ]; then
    bash scripts/registry-up.sh  # a local registry with the stand-ins for the registry test
fi
export JHSWARM_DB_READY=1
export JHSWARM_ENV_READY=1  # the e2e session fixture need not run it again

VENV="${REPO_ROOT}/.venv"
if [ ! -x "${VENV}/bin/python" ]; then
    log "creating ${VENV}"
    python3 -m venv "${VENV}"
fi
# reinstall only when the requirements changed
stamp="${VENV}/.requirements.sha256"
want="$(cat requirements-test.txt requirements.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${stamp}" 2>/dev/null || true)" != "${want}" ]; then
    log "installing requirements-test.txt into ${VENV}"
    "${VENV}/bin/python" -m pip install --disable-pip-version-check -q -r requirements-test.txt
    printf '%s\n' "${want}" >"${stamp}"
fi
log "setup done in $((SECONDS - t0))s"

rc=0
"${VENV}/bin/python" -m pytest tests -v "$@" || rc=$? # (no ERR trap: the status is handled here)
if [ "${rc}" -eq 5 ]; then
    log "pytest collected no tests: failing"
    exit 1
fi
log "pytest exited with ${rc} after $((SECONDS - t0))s"
exit "${rc}"
