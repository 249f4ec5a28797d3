#!/usr/bin/env bash
# Build the hub image (the project's Dockerfile) for linux/arm64 on this
# amd64 machine and smoke-check it under emulation, as root:
#
#   bash scripts/build-arm64.sh
#
# Not part of scripts/test.sh (it takes tens of minutes under qemu): run it by
# hand, or select its test: JHSWARM_ARM64=1 .venv/bin/python -m pytest tests/arm64
# No registry serves an arm64 base here, so it builds arm64 stand-ins with
# the same recipe as scripts/env-up.sh's amd64 ones:
#
#   1. qemu-user-static's binfmt handler for aarch64, with flag F (the
#      kernel opens the interpreter at registration, so it works inside
#      containers too); binfmt_misc is mounted if it is not
#   2. jhswarm-standin/rootfs:bookworm-py-arm64: debootstrap --arch=arm64
#      (its second stage and the chroot's apt run under qemu), the same
#      packages and venv as env-up.sh's rootfs; made an image with a classic
#      `docker build --platform linux/arm64` FROM scratch + ADD rootfs.tar
#      (docker import would label it amd64)
#   3. jhswarm-standin/jupyterhub:6.1.1-arm64: tests/standin/jupyterhub.Dockerfile
#      on that rootfs (for quay.io/jupyterhub/jupyterhub:6.1.1's arm64 variant)
#   4. jhswarm-arm64/jupyterhub-swarm:<version>: the project's Dockerfile with
#      --build-arg BASE_IMAGE=<3.> --platform linux/arm64 (never the tag the
#      stack deploys, jupyterhub-swarm:<version>, which stays amd64)
#   5. smoke checks in it: uname -m is aarch64, the image's version label,
#      jupyterhub --version, haproxy -v and its config check, the hub's
#      modules import, jupyterhub-swarm-check runs
#
# Idempotent and cached like env-up.sh: each stand-in carries a hash of its
# inputs and is rebuilt only when that changes; step 4 uses the classic
# builder's layer cache. A second run takes about 80 s, nearly all of it
# the smoke checks (each `docker run` starts an emulated Python).
# The debootstrap folder is temporary (/var/tmp/jhswarm-rootfs-arm64.*) and
# removed at exit, whatever happens.
#
# Environment:
#   DOCKER   docker client to use (default: the docker on PATH)
#   NICE     prefix for the heavy host commands, debootstrap and the chroot
#            (default: "nice -n 19"). A build's RUN steps run under dockerd,
#            not this shell, so nice cannot reach them: they get the least
#            CPU weight instead (docker build --cpu-shares 2, BUILD_CPU_SHARES)
set -Eeuo pipefail

LOG_TAG=build-arm64
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, step, apt_install, cached images; the tags

export DEBIAN_FRONTEND=noninteractive
export DOCKER_BUILDKIT=0
export DOCKER_CLI_HINTS=false
# a path, not the bare name, which would call this function itself
DOCKER="${DOCKER:-$(command -v docker || true)}"
[ -n "${DOCKER}" ] || die "no docker client on PATH"
docker() { "${DOCKER}" "$@"; }
read -r -a NICE <<<"${NICE-nice -n 19}"
BUILD_CPU_SHARES="${BUILD_CPU_SHARES:-2}"

PLATFORM=linux/arm64
DEB_ARCH=arm64
ROOTFS_ARM64_TAG="${ROOTFS_TAG}-arm64"
HUB_ARM64_TAG="${HUB_TAG}-arm64"
IMAGE_VERSION="$(sed -n 's/.*org\.opencontainers\.image\.version="\([^"]*\)".*/\1/p' "${REPO_ROOT}/Dockerfile")"
[ -n "${IMAGE_VERSION}" ] || die "no org.opencontainers.image.version label in Dockerfile"
IMAGE_TAG="jhswarm-arm64/jupyterhub-swarm:${IMAGE_VERSION}"

# The amd64 stand-ins' recipe, read from env-up.sh so that it is written once
# (ROOTFS_PACKAGES, ROOTFS_REV, CHP_VERSION)
env_up_setting() {
    local v
    v="$(sed -n "s/^$1=\"\{0,1\}\([^\"#]*\)\"\{0,1\}.*/\1/p" "${REPO_ROOT}/scripts/env-up.sh" | head -n1)"
    v="${v%"${v##*[![:space:]]}"}"
    [ -n "$v" ] || die "scripts/env-up.sh sets no $1"
    printf '%s\n' "$v"
}
ROOTFS_PACKAGES="$(env_up_setting ROOTFS_PACKAGES)"
ROOTFS_REV="$(env_up_setting ROOTFS_REV)"
CHP_VERSION="$(env_up_setting CHP_VERSION)"

T_START=$SECONDS
ROOTFS_WORK=""
on_exit() {
    cleanup_rootfs
    remove_tmp_paths
}
trap on_exit EXIT
trap 'exit 130' INT TERM

need_root

# --- 1. binfmt ----------------------------------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
ensure_binfmt() {
    apt_install qemu-user-static binfmt-support debootstrap
    if [ ! -e "${BINFMT}/register" ]; then
        log "mounting binfmt_misc on ${BINFMT}"
        mount -t binfmt_misc binfmt_misc "${BINFMT}"
    fi
    if [ ! -e "${BINFMT}/qemu-aarch64" ]; then
        update-binfmts --import qemu-aarch64 2>/dev/null || true
        update-binfmts --enable qemu-aarch64
    fi
    grep -qx enabled "${BINFMT}/qemu-aarch64" || die "${BINFMT}/qemu-aarch64 is not enabled"
    grep -q '^flags: .*F' "${BINFMT}/qemu-aarch64" ||
        die "${BINFMT}/qemu-aarch64 lacks flag F (containers could not find the interpreter): $(grep '^flags' "${BINFMT}/qemu-aarch64")"
    log "binfmt: qemu-aarch64 $(sed -n 's/^flags: //p' "${BINFMT}/qemu-aarch64"), $(sed -n 's/^interpreter //p' "${BINFMT}/qemu-aarch64")"
}

# --- 2. arm64 rootfs --------------------------------------------------------------
build_rootfs() {
    local mirror secmirror key
    mirror="$(debian_mirror main)"
    secmirror="$(debian_mirror security)"
    key="$(printf '%s\n' "rev=${ROOTFS_REV}" "${DEBIAN_SUITE}" "${DEB_ARCH}" "${ROOTFS_PACKAGES}" | sha)"
    standin_cached "${ROOTFS_ARM64_TAG}" "${key}" && return 0
    log "building ${ROOTFS_ARM64_TAG} (mirror ${mirror})"

    ROOTFS_WORK="$(mktemp -d /var/tmp/jhswarm-rootfs-arm64.XXXXXX)"
    local r="${ROOTFS_WORK}/rootfs" t0
    debootstrap_rootfs "$r" "${DEBIAN_SUITE}" "${mirror}" "${secmirror}" NICE --arch="${DEB_ARCH}"

    # shellcheck disable=SC2016  # $(uname -m) runs in the chroot
    provision_rootfs "$r" NICE "the arm64 chroot (under qemu)" 'test "$(uname -m)" = aarch64'

    # FROM scratch + ADD: the classic builder gives the image the requested
    # platform (docker import on this engine ignores --platform: amd64)
    t0=$SECONDS
    local ctx="${ROOTFS_WORK}/ctx"
    mkdir "${ctx}"
    tar --numeric-owner --one-file-system -C "$r" -cf "${ctx}/rootfs.tar" .
    rm -rf --one-file-system "$r"
    cat >"${ctx}/Dockerfile" <<'EOF'
FROM scratch
ADD rootfs.tar /
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8
CMD ["/bin/bash"]
EOF
    docker_build_standin "${ROOTFS_ARM64_TAG}" "${key}" "${ctx}/Dockerfile" "${ctx}" --platform "${PLATFORM}" \
        --cpu-shares "${BUILD_CPU_SHARES}"
    log "image from the rootfs done in $((SECONDS - t0))s"
    cleanup_rootfs
}

# --- 3. hub stand-in ------------------------------------------------------------------
build_hub_standin() {
    local key f ctx
    key="$(
        {
            echo "${JUPYTERHUB_VERSION} ${CHP_VERSION} ${PLATFORM}"
            image_id "${ROOTFS_ARM64_TAG}"
            cat "${STANDIN_DIR}/jupyterhub.Dockerfile" "${STANDIN_DIR}/chp-docker-entrypoint"
            host_ca_files | while read -r f; do cat "$f"; done
        } | sha
    )"
    standin_cached "${HUB_ARM64_TAG}" "${key}" && return 0
    log "building ${HUB_ARM64_TAG}"
    ctx="$(mktemp -d /tmp/jhswarm-hubctx-arm64.XXXXXX)"
    TMP_PATHS+=("${ctx}")
    cp "${STANDIN_DIR}/jupyterhub.Dockerfile" "${ctx}/Dockerfile"
    cp "${STANDIN_DIR}/chp-docker-entrypoint" "${ctx}/"
    mkdir "${ctx}/host-ca"
    host_ca_files | while read -r f; do cp "$f" "${ctx}/host-ca/$(basename "${f%.crt}").crt"; done
    docker_build_standin "${HUB_ARM64_TAG}" "${key}" "${ctx}/Dockerfile" "${ctx}" \
        --platform "${PLATFORM}" --cpu-shares "${BUILD_CPU_SHARES}" \
        --build-arg "ROOTFS_IMAGE=${ROOTFS_ARM64_TAG}" \
        --build-arg "JUPYTERHUB_VERSION=${JUPYTERHUB_VERSION}" \
        --build-arg "CHP_VERSION=${CHP_VERSION}"
    rm -rf "${ctx}"
}

# --- 4. the project's image ----------------------------------------------------------
build_image() {
    local logf
    logf="$(mktemp /tmp/jhswarm-build-arm64.XXXXXX.log)"
    if ! docker build --pull=false --rm --force-rm --platform "${PLATFORM}" \
        --cpu-shares "${BUILD_CPU_SHARES}" \
        --build-arg "BASE_IMAGE=${HUB_ARM64_TAG}" -t "${IMAGE_TAG}" "${REPO_ROOT}" \
        >"${logf}" 2>&1; then
        tail -n 60 "${logf}" >&2
        die "docker build of ${IMAGE_TAG} failed (full log: ${logf})"
    fi
    rm -f "${logf}"
}

# --- 5. smoke checks ------------------------------------------------------------------
run_in() { docker run --rm --platform "${PLATFORM}" "$@"; }

smoke_check() {
    local out arch
    arch="$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "${IMAGE_TAG}")"
    [ "${arch}" = "${PLATFORM}" ] || die "${IMAGE_TAG} is ${arch}, not ${PLATFORM}"
    out="$(docker image inspect -f '{{ index .Config.Labels "org.opencontainers.image.version" }}' "${IMAGE_TAG}")"
    [ "${out}" = "${IMAGE_VERSION}" ] || die "${IMAGE_TAG}: version label '${out}'"
    out="$(run_in "${IMAGE_TAG}" uname -m)"
    [ "${out}" = aarch64 ] || die "${IMAGE_TAG}: uname -m printed '${out}'"
    out="$(run_in "${IMAGE_TAG}" jupyterhub --version | tail -n1)"
    [ "${out}" = "${JUPYTERHUB_VERSION}" ] || die "${IMAGE_TAG}: jupyterhub --version printed '${out}'"
    out="$(run_in "${IMAGE_TAG}" haproxy -v)"  # (no pipe to head: pipefail and SIGPIPE)
    printf '%s\n' "${out}" | head -n1 >&2
    run_in "${IMAGE_TAG}" haproxy -c -f /srv/jupyterhub/docker-api-proxy.cfg >&2
    run_in "${IMAGE_TAG}" python3 -c '
import platform, sys
sys.path.insert(0, "/srv/jupyterhub")
import jupyterhub_swarm, dockerspawner, nativeauthenticator, docker, psycopg2, pymysql
print("imports OK on", platform.machine())' >&2
    # the configuration check the README tells operators to run; without an
    # engine or settings it reports problems, but it must run (exit 0 or 1,
    # not a crash of the interpreter)
    local rc=0
    out="$(run_in -e SPAWNER_NETWORK_NAME=n "${IMAGE_TAG}" jupyterhub-swarm-check 2>&1)" || rc=$?
    printf '%s\n' "${out}" | tail -n 5 >&2
    [ "${rc}" -le 1 ] || die "${IMAGE_TAG}: jupyterhub-swarm-check exited ${rc}"
    log "${IMAGE_TAG} is ${arch}: uname -m aarch64, jupyterhub ${JUPYTERHUB_VERSION}, haproxy OK, modules import, check ran (exit ${rc})"
}

step "binfmt for aarch64 (qemu-user-static)" ensure_binfmt
step "stand-in image ${ROOTFS_ARM64_TAG}" build_rootfs
step "stand-in image ${HUB_ARM64_TAG}" build_hub_standin
step "image ${IMAGE_TAG} (--platform ${PLATFORM})" build_image
step "smoke checks in ${IMAGE_TAG}" smoke_check
log "arm64 image ready in $((SECONDS - T_START))s: ${IMAGE_TAG}"
