#!/usr/bin/env bash
# The tests' image registry: Debian's docker-registry (CNCF distribution 2.8)
# on 127.0.0.1:5000 (JHSWARM_REGISTRY_ADDR), its storage in
# /var/lib/jhswarm-registry, with the stand-in images pushed to it as
# 127.0.0.1:5000/jhswarm-standin/... (tests/e2e/test_26_registry.py deploys
# and spawns from those). Idempotent: when the registry answers and has the
# images, a run takes about a second.
#
#   bash scripts/registry-up.sh         install, start, push the stand-ins
#   bash scripts/registry-up.sh stop    stop it (the data stays)
#   bash scripts/registry-up.sh cluster       the same registry also on the
#        cluster bridge's host address, 10.200.0.1:5000 (CLUSTER_REGISTRY_ADDR),
#        for the nodes of scripts/cluster.sh (after `cluster.sh up`, which
#        tells their dockerds it is insecure); the first listener is made too
#   bash scripts/registry-up.sh cluster-stop  stop that listener only
#
# Run by scripts/test.sh, and by the registry test itself when it is not.
# The helpers are lib.sh's (registry_up, registry_push, registry_stop).
set -Eeuo pipefail

LOG_TAG=registry-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, step, apt_install, registry_*

need_root
export DEBIAN_FRONTEND=noninteractive
export DOCKER_CLI_HINTS=false
DOCKER="${DOCKER:-/usr/bin/docker}"
docker() { "${DOCKER}" "$@"; }

case "${1:-up}" in
    up)
        step "registry on ${REGISTRY_ADDR}" registry_up
        # shellcheck disable=SC2086  # a list of names
        step "stand-in images in the registry" registry_push ${REGISTRY_IMAGES}
        ;;
    stop)
        registry_stop
        ;;
    cluster)
        step "registry on ${REGISTRY_ADDR}" registry_up
        ip -o addr show | grep -qF " inet ${CLUSTER_HOST_ADDR}/" ||
            die "${CLUSTER_HOST_ADDR} is no address of this machine: run scripts/cluster.sh up first"
        step "registry on ${CLUSTER_REGISTRY_ADDR} (the cluster's nodes)" registry_up "${CLUSTER_REGISTRY_ADDR}"
        ;;
    cluster-stop)
        registry_stop "${CLUSTER_REGISTRY_ADDR}"
        ;;
    *)
        die "usage: registry-up.sh [up|stop|cluster|cluster-stop] (got '$1')"
        ;;
esac
