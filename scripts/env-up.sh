#!/usr/bin/env bash
# Bring up everything the tests need on a fresh Debian 12 (bookworm) machine,
# as root. Idempotent; a second run takes seconds.
#
#   1. apt packages: docker.io (Debian's engine 20.10), debootstrap, ...
#   2. dockerd running (started in the background if the socket is dead)
#   3. single-node swarm (docker swarm init --advertise-addr 127.0.0.1)
#   4. local stand-in images (no container registry is reachable here):
#        jhswarm-standin/rootfs:bookworm-py   debootstrap'ed bookworm + python/node
#        jhswarm-standin/jupyterhub:6.1.1     for quay.io/jupyterhub/jupyterhub
#                                             (and the proxy image: has CHP)
#        jhswarm-standin/notebook:6.1.1       for a docker-stacks base-notebook
#        jhswarm-standin/jupyterhub:5.5.4     the previous generation's base
#        jhswarm-standin/notebook:4.0.2,      user images with older
#          jhswarm-standin/notebook:5.5.4     jupyterhub-singleuser releases
#      Each image carries a label with a hash of its inputs (versions,
#      Dockerfile, host CA certs, parent image id); it is rebuilt only when
#      missing or when that hash changed.
#
# Environment:
#   JHSWARM_USE_REAL_IMAGES=1  skip building the stand-ins (tests pull real ones)
#   JHSWARM_VERIFY=1           re-run the image smoke checks even when cached
#   DOCKER                     docker client to use (default: first that works)
set -Eeuo pipefail

LOG_TAG=env-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, step, apt_install, cached images; the tags

# --- pinned versions (a bump changes the tag and/or the cache key) ----------
# (DEBIAN_SUITE, JUPYTERHUB_VERSION and the tags ROOTFS_TAG, HUB_TAG, NB_TAG:
# scripts/lib.sh)
CHP_VERSION=4.6.3
JUPYTERLAB_VERSION=4.3.8
IPYKERNEL_VERSION=6.29.5
ROOTFS_PACKAGES="python3 python3-pip python3-venv nodejs npm ca-certificates curl tini"
ROOTFS_REV=1   # bump to force a rebuild of the rootfs image

HOST_APT_PACKAGES="docker.io debootstrap ca-certificates curl iproute2"  # iproute2: scripts/cluster.sh

export DEBIAN_FRONTEND=noninteractive
export DOCKER_BUILDKIT=0
DOCKER_PREF="${DOCKER:-}"
DOCKER=""
export DOCKER_CLI_HINTS=false

T_START=$SECONDS

ROOTFS_WORK=""
# besides lib.sh's TMP_PATHS: the rootfs work directory and its mounts
on_exit() {
    cleanup_rootfs
    remove_tmp_paths
}
trap on_exit EXIT
trap 'exit 130' INT TERM

need_root

# --- 1. host packages ---------------------------------------------------------
install_host_packages() {
    # shellcheck disable=SC2086  # a list of names
    apt_install ${HOST_APT_PACKAGES}
    [ -n "${APT_INSTALLED}" ] || return 0
    command -v dockerd >/dev/null || die "dockerd still missing after installing docker.io"
    command -v debootstrap >/dev/null || die "debootstrap still missing"
}

# --- 2. docker engine ---------------------------------------------------------
docker_answers() { timeout 20 "$1" info >/dev/null 2>&1; }

pick_docker_client() {
    local c
    for c in ${DOCKER_PREF} "$(command -v docker || true)" /usr/local/bin/docker /usr/bin/docker; do
        if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
        if docker_answers "$c"; then
            DOCKER=$c
            return 0
        fi
    done
    return 1
}

# pid of the dockerd serving the default socket, if alive (other dockerd
# instances with their own -H/--pidfile may run on this machine: ignore them)
default_dockerd_pid() {
    local p
    p="$(cat /var/run/docker.pid 2>/dev/null)" || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && printf '%s\n' "$p"
}

start_dockerd() {
    if pick_docker_client; then
        log "dockerd answers (client ${DOCKER})"
        return 0
    fi
    local pid
    if pid="$(default_dockerd_pid)"; then
        log "dockerd (pid ${pid}) exists but does not answer yet; waiting"
    else
        # A pid file left by a dockerd that died with the machine blocks start-up.
        rm -f /var/run/docker.pid
        log "starting dockerd (log: /var/log/dockerd.log)"
        setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
        pid=$!
        disown || true
    fi
    local i
    for i in $(seq 1 90); do
        if pick_docker_client; then
            # the preferred client may have been tried before the socket was up
            DOCKER=""
            pick_docker_client
            log "dockerd up after ~${i}s (client ${DOCKER})"
            return 0
        fi
        if ! kill -0 "${pid}" 2>/dev/null; then
            tail -n 30 /var/log/dockerd.log >&2 || true
            die "dockerd (pid ${pid}) exited; see /var/log/dockerd.log"
        fi
        sleep 1
    done
    tail -n 30 /var/log/dockerd.log >&2 || true
    die "dockerd did not answer within 90s; see /var/log/dockerd.log"
}

docker() { "${DOCKER}" "$@"; }

# --- 3. swarm ----------------------------------------------------------------
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

ensure_swarm() {
    local state i
    state="$(swarm_state)"
    # Right after dockerd (re)starts an existing swarm node reports "pending"
    # for a moment: wait for it to settle before deciding anything.
    for i in $(seq 1 30); do
        case "${state}" in active | inactive) break ;; esac
        sleep 1
        state="$(swarm_state)"
    done
    case "${state}" in
        active)
            log "swarm already active" ;;
        inactive)
            # tolerate a concurrent `swarm init` by someone else: judged below
            if docker swarm init --advertise-addr 127.0.0.1 >/dev/null; then
                log "swarm initialised"
            fi ;;
        *)
            # never `swarm leave --force` here: it would wipe services/secrets
            die "swarm node state is '${state}' (not active/inactive) after 30s; inspect 'docker info' and fix by hand (e.g. 'docker swarm leave --force' then re-run)" ;;
    esac
    state="$(swarm_state)"
    [ "${state}" = active ] || die "swarm is '${state}', expected 'active'"
}

# --- 4. stand-in images (image_key, image_id, sha, standin_cached,
# docker_build_standin: scripts/lib.sh) -----------------------------------------

build_rootfs_image() {
    local mirror secmirror key
    mirror="$(debian_mirror main)"
    secmirror="$(debian_mirror security)"
    key="$(printf '%s\n' "rev=${ROOTFS_REV}" "${DEBIAN_SUITE}" "${ROOTFS_PACKAGES}" | sha)"
    standin_cached "${ROOTFS_TAG}" "${key}" && return 0
    log "building ${ROOTFS_TAG} (mirror ${mirror}, security ${secmirror})"

    ROOTFS_WORK="$(mktemp -d /var/tmp/jhswarm-rootfs.XXXXXX)"
    local r="${ROOTFS_WORK}/rootfs" t0 NONE=()
    debootstrap_rootfs "$r" "${DEBIAN_SUITE}" "${mirror}" "${secmirror}" NONE

    provision_rootfs "$r" NONE "the chroot"

    t0=$SECONDS
    tar --numeric-owner --one-file-system -C "$r" -c . |
        docker import \
            --change "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "ENV LANG=C.UTF-8" \
            --change "ENV LC_ALL=C.UTF-8" \
            --change "LABEL ${KEY_LABEL}=${key}" \
            --change 'CMD ["/bin/bash"]' \
            - "${ROOTFS_TAG}" >/dev/null
    log "docker import done in $((SECONDS - t0))s"
    prune_old_standins
    cleanup_rootfs
}

# new_context NAME DOCKERFILE [FILE...]: a fresh build context in ${CTX}
# (also removed at exit): DOCKERFILE as its Dockerfile, each FILE by its name
CTX=""
new_context() {
    local name=$1 dockerfile=$2 f
    shift 2
    CTX="$(mktemp -d "/tmp/jhswarm-${name}.XXXXXX")"
    TMP_PATHS+=("${CTX}")
    cp "${dockerfile}" "${CTX}/Dockerfile"
    for f in "$@"; do cp "$f" "${CTX}/$(basename "$f")"; done
}

# verify_hub_image TAG VERSION
verify_hub_image() {
    local tag=$1 version=$2 out tmp
    out="$(docker run --rm "${tag}" jupyterhub --version)"
    [ "$(printf '%s' "${out}" | tail -n1)" = "${version}" ] ||
        die "${tag}: jupyterhub --version printed '${out}'"
    out="$(docker run --rm --user 65534 --entrypoint /srv/configurable-http-proxy/chp-docker-entrypoint \
        "${tag}" --version)"
    [ "$(printf '%s' "${out}" | tail -n1)" = "${CHP_VERSION}" ] ||
        die "${tag}: configurable-http-proxy --version printed '${out}'"
    # pip install in a later classic `docker build` FROM the stand-in must work
    tmp="$(mktemp -d /tmp/jhswarm-verify.XXXXXX)"
    TMP_PATHS+=("${tmp}")
    printf 'FROM %s\nRUN pip install --no-cache-dir six==1.16.0 && python3 -c "import six; print(six.__version__)"\n' \
        "${tag}" >"${tmp}/Dockerfile"
    if ! DOCKER_BUILDKIT=0 docker build --rm --force-rm -t jhswarm-standin/verify-pip:tmp "${tmp}" \
        >"${tmp}/build.log" 2>&1; then
        tail -n 40 "${tmp}/build.log" >&2
        die "pip install inside a docker build FROM ${tag} failed"
    fi
    docker image rm jhswarm-standin/verify-pip:tmp >/dev/null
    rm -rf "${tmp}"
    log "${tag}: jupyterhub ${version}, configurable-http-proxy ${CHP_VERSION}, pip-in-docker-build OK"
}

# build_hub_image VERSION: jhswarm-standin/jupyterhub:VERSION
build_hub_image() {
    local version=$1 tag="jhswarm-standin/jupyterhub:$1" key f
    key="$(
        {
            echo "${version} ${CHP_VERSION}"
            image_id "${ROOTFS_TAG}"
            cat "${STANDIN_DIR}/jupyterhub.Dockerfile" "${STANDIN_DIR}/chp-docker-entrypoint"
            host_ca_files | while read -r f; do cat "$f"; done
        } | sha
    )"
    if standin_cached "${tag}" "${key}"; then
        [ "${JHSWARM_VERIFY:-0}" = 1 ] && verify_hub_image "${tag}" "${version}"
        return 0
    fi
    log "building ${tag}"
    new_context hubctx "${STANDIN_DIR}/jupyterhub.Dockerfile" "${STANDIN_DIR}/chp-docker-entrypoint"
    mkdir "${CTX}/host-ca"
    host_ca_files | while read -r f; do
        cp "$f" "${CTX}/host-ca/$(basename "${f%.crt}").crt"
    done
    docker_build_standin "${tag}" "${key}" "${CTX}/Dockerfile" "${CTX}" \
        --build-arg "ROOTFS_IMAGE=${ROOTFS_TAG}" \
        --build-arg "JUPYTERHUB_VERSION=${version}" \
        --build-arg "CHP_VERSION=${CHP_VERSION}"
    rm -rf "${CTX}"
    verify_hub_image "${tag}" "${version}"
}

# verify_nb_image TAG SINGLEUSER_VERSION
verify_nb_image() {
    local tag=$1 want=$2 out version
    version="$(docker run --rm "${tag}" jupyterhub-singleuser --version | tail -n1)"
    [ "${version}" = "${want}" ] ||
        die "${tag}: jupyterhub-singleuser --version printed '${version}'"
    docker run --rm "${tag}" python3 -c 'import jupyterlab, ipykernel' ||
        die "${tag}: cannot import jupyterlab/ipykernel"
    out="$(docker run --rm "${tag}" sh -c 'id -u; id -g; pwd; command -v start-singleuser.sh')"
    [ "$(printf '%s\n' "${out}" | tr '\n' ' ')" = "1000 100 /home/jovyan/work /usr/local/bin/start-singleuser.sh " ] ||
        die "${tag}: unexpected user/workdir: ${out}"
    # as root: CHOWN_EXTRA paths are created + chowned, then it drops to
    # jovyan (a fake jupyterhub-singleuser earlier on PATH reports who runs it)
    out="$(docker run --rm --user root -e CHOWN_EXTRA=/srv/x1,/srv/x2/y \
        -e PATH=/tmp/fake:/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
        --entrypoint /bin/sh "${tag}" -c '
            mkdir -p /tmp/fake
            printf "#!/bin/sh\necho \$(id -u):\$(id -g) \$HOME \$*\n" >/tmp/fake/jupyterhub-singleuser
            chmod 755 /tmp/fake/jupyterhub-singleuser
            start-singleuser.sh --foo 2>/dev/null
            stat -c %u:%g /srv/x1 /srv/x2/y' | tr '\n' ' ')"
    [ "${out}" = "1000:100 /home/jovyan --foo 1000:100 1000:100 " ] ||
        die "${tag}: start-singleuser.sh as root misbehaved: '${out}'"
    log "${tag}: jupyterhub-singleuser ${version}, jupyterlab+ipykernel import OK, user 1000:100"
}

# build_nb_image SINGLEUSER_VERSION JUPYTERLAB_VERSION BASE_TAG:
# jhswarm-standin/notebook:SINGLEUSER_VERSION, FROM a hub stand-in (which
# trusts the host CA for pip)
build_nb_image() {
    local version=$1 lab=$2 base=$3 tag="jhswarm-standin/notebook:$1" key
    key="$(
        {
            echo "${version} ${lab} ${IPYKERNEL_VERSION}"
            image_id "${base}"
            cat "${STANDIN_DIR}/notebook.Dockerfile" "${STANDIN_DIR}/start-singleuser.sh"
        } | sha
    )"
    if standin_cached "${tag}" "${key}"; then
        [ "${JHSWARM_VERIFY:-0}" = 1 ] && verify_nb_image "${tag}" "${version}"
        return 0
    fi
    log "building ${tag}"
    new_context nbctx "${STANDIN_DIR}/notebook.Dockerfile" "${STANDIN_DIR}/start-singleuser.sh"
    docker_build_standin "${tag}" "${key}" "${CTX}/Dockerfile" "${CTX}" \
        --build-arg "BASE_IMAGE=${base}" \
        --build-arg "JUPYTERHUB_VERSION=${version}" \
        --build-arg "JUPYTERLAB_VERSION=${lab}" \
        --build-arg "IPYKERNEL_VERSION=${IPYKERNEL_VERSION}"
    rm -rf "${CTX}"
    verify_nb_image "${tag}" "${version}"
}

build_extra_notebooks() {
    local pair
    for pair in ${EXTRA_NOTEBOOKS}; do
        build_nb_image "${pair%%:*}" "${pair#*:}" "${PREVIOUS_HUB_TAG}"
    done
}

# --- main ----------------------------------------------------------------------
step "host packages (${HOST_APT_PACKAGES})" install_host_packages
step "docker engine" start_dockerd
step "swarm" ensure_swarm
if [ "${JHSWARM_USE_REAL_IMAGES:-0}" = 1 ]; then
    log "JHSWARM_USE_REAL_IMAGES=1: not building stand-in images (tests use real, pulled images)"
else
    step "stand-in image ${ROOTFS_TAG}" build_rootfs_image
    step "stand-in image ${HUB_TAG}" build_hub_image "${JUPYTERHUB_VERSION}"
    step "stand-in image ${NB_TAG}" build_nb_image "${JUPYTERHUB_VERSION}" "${JUPYTERLAB_VERSION}" "${HUB_TAG}"
    step "stand-in image ${PREVIOUS_HUB_TAG}" build_hub_image "${PREVIOUS_HUB_VERSION}"
    step "stand-in images of older jupyterhub-singleuser releases" build_extra_notebooks
fi
log "environment ready in $((SECONDS - T_START))s (docker client: ${DOCKER}, $(docker version --format 'engine {{.Server.Version}}' 2>/dev/null || echo 'engine ?'))"
