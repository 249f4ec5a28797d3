# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source it
# Helpers shared by the scripts in scripts/ (env-up.sh, db-up.sh, browser-up.sh,
# cluster.sh, test.sh, with-env-file.sh), sourced right after their
# `set -Eeuo pipefail`; never run on its own. It holds:
#   - the repository's paths, and the stand-in image tags and pinned versions
#     that several scripts name
#   - logging and errors: log, die, need_root, the ERR trap (on_err: file:line
#     and command), the `step` timer
#   - temporary paths removed at exit (TMP_PATHS)
#   - apt: pkg_installed, apt_lists_present, apt_install
#   - cached stand-in image builds: an image carries a label ${KEY_LABEL}
#     with a hash of its inputs and is rebuilt only when missing or when that
#     hash changed
#   - the tests' image registry (registry_up, registry_stop, registry_push):
#     Debian's docker-registry on ${REGISTRY_ADDR}
# A script sets LOG_TAG (its log prefix, e.g. LOG_TAG=env-up) before
# sourcing this file; the default is the script's name without ".sh".
# Sourcing it prints nothing: it only defines these and sets the ERR and EXIT
# traps.

# --- paths ----------------------------------------------------------------------
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STANDIN_DIR="${REPO_ROOT}/tests/standin"

# --- stand-in images and pinned versions (a bump changes the tag and/or the
# cache key; env-up.sh builds these, db-up.sh builds on them) -----------------
DEBIAN_SUITE=bookworm
JUPYTERHUB_VERSION=6.1.1
ROOTFS_TAG="jhswarm-standin/rootfs:${DEBIAN_SUITE}-py"
HUB_TAG="jhswarm-standin/jupyterhub:${JUPYTERHUB_VERSION}"
NB_TAG="jhswarm-standin/notebook:${JUPYTERHUB_VERSION}"
# the previous generation of this project's image (JupyterHub 5.5.4), whose
# databases and running servers the upgrade tests take over
PREVIOUS_HUB_VERSION=5.5.4
PREVIOUS_HUB_TAG="jhswarm-standin/jupyterhub:${PREVIOUS_HUB_VERSION}"
# further user images: the single-user server of the spec's default image
# (jupyter/base-notebook:notebook-6.5.4 has jupyterhub-singleuser 4.0) and of
# the previous generation; "singleuser-version:jupyterlab-version"
EXTRA_NOTEBOOKS="4.0.2:4.0.2 5.5.4:4.3.8"
KEY_LABEL="org.jhswarm.standin.key"
# the tests' image registry (scripts/registry-up.sh): 127.0.0.0/8 is an
# insecure registry for dockerd by default, so plain HTTP needs no daemon
# setting on this machine
REGISTRY_ADDR="${JHSWARM_REGISTRY_ADDR:-127.0.0.1:5000}"
REGISTRY_DIR=/var/lib/jhswarm-registry   # config.yml, data/, registry.pid
# the same registry (its storage) as the nodes of scripts/cluster.sh reach it:
# a second listener on the cluster bridge's host address, which each node's
# dockerd is told is an insecure (plain HTTP) registry; pushes go through
# ${REGISTRY_ADDR}, and ${CLUSTER_REGISTRY_ADDR}/<name> is the same image
CLUSTER_HOST_ADDR=10.200.0.1  # the host's address on scripts/cluster.sh's bridge
CLUSTER_REGISTRY_ADDR=${CLUSTER_HOST_ADDR}:5000
REGISTRY_LOG=/var/log/jhswarm-registry.log
# what registry-up.sh pushes: each stand-in under ${REGISTRY_ADDR}/<its name>
REGISTRY_IMAGES="${HUB_TAG} ${NB_TAG}"

# --- logging / errors --------------------------------------------------------
LOG_TAG="${LOG_TAG:-$(basename "$0" .sh)}"
log() { printf '[%s %s] %s\n' "${LOG_TAG}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# the failing command's file (a script, or this file) and line
on_err() {
    local rc=$? line=$1 cmd=$2
    log "ERROR: command failed (exit ${rc}) at ${BASH_SOURCE[1]:-$0}:${line}: ${cmd}"
    exit "${rc}"
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

now_ms() { date +%s%3N; }
fmt_ms() { printf '%d.%02ds' $(($1 / 1000)) $((($1 % 1000) / 10)); }
# step NAME CMD... : run CMD, print its duration: "done in 3s" (whole
# seconds), or "0.42s" when the script sets STEP_MS=1 (cluster.sh: its steps
# take well under a second)
step() {
    local name=$1 t0=$SECONDS t0_ms
    shift
    t0_ms=$(now_ms)
    log "==> ${name}"
    "$@"
    if [ "${STEP_MS:-0}" = 1 ]; then
        log "<== ${name}: $(fmt_ms $(($(now_ms) - t0_ms)))"
    else
        log "<== ${name}: done in $((SECONDS - t0))s"
    fi
}

# --- temporary paths: removed when the script exits, however it exits
# (a script with more to clean up sets its own EXIT trap and calls
# remove_tmp_paths from it) -----------------------------------------------------
TMP_PATHS=()
remove_tmp_paths() {
    if [ ${#TMP_PATHS[@]} -gt 0 ]; then rm -rf -- "${TMP_PATHS[@]}"; fi
}
trap remove_tmp_paths EXIT

# --- apt --------------------------------------------------------------------------
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

# apt_install PKG... : install those of PKG... that are missing; sets
# APT_INSTALLED to what it installed (empty when all were present), for the
# caller's checks afterwards
APT_INSTALLED=""
apt_install() {
    local missing=() p
    APT_INSTALLED=""
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "all present: $*"
        return 0
    fi
    log "installing: ${missing[*]}"
    # no service starts from maintainer scripts (no systemd here; e.g. the
    # docker.io postinst would try to): the scripts start what they need
    # themselves (env-up.sh: dockerd; db-up.sh: the databases)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        TMP_PATHS+=(/usr/sbin/policy-rc.d)
    fi
    apt_lists_present || apt-get update -q
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    APT_INSTALLED="${missing[*]}"
}

# --- cached stand-in images (the script defines `docker`) ----------------------
image_key() {
    docker image inspect -f "{{ index .Config.Labels \"${KEY_LABEL}\" }}" "$1" 2>/dev/null || true
}
image_id() { docker image inspect -f '{{.Id}}' "$1"; }
# the cache key of the inputs on stdin
sha() { sha256sum | cut -c1-16; }

# standin_cached TAG KEY: does TAG exist with the key KEY? (then says so)
standin_cached() {
    [ "$(image_key "$1")" = "$2" ] || return 1
    log "$1 cached (key $2)"
}

# Drop superseded (now untagged) stand-in images so rebuilds don't pile up.
prune_old_standins() {
    docker image prune -f --filter "label=${KEY_LABEL}" >/dev/null || true
}

# docker_build_standin TAG KEY DOCKERFILE CONTEXT_DIR [--build-arg ...]:
# classic build, labelled with KEY
docker_build_standin() {
    local tag=$1 key=$2 dockerfile=$3 ctx=$4
    shift 4
    local logf
    logf="$(mktemp /tmp/jhswarm-build.XXXXXX.log)"
    if ! DOCKER_BUILDKIT=0 docker build --pull=false --rm --force-rm \
        -f "${dockerfile}" --label "${KEY_LABEL}=${key}" -t "${tag}" "$@" "${ctx}" \
        >"${logf}" 2>&1; then
        tail -n 60 "${logf}" >&2
        die "docker build of ${tag} failed (full log: ${logf})"
    fi
    rm -f "${logf}"
    prune_old_standins
}

# --- debootstrapped roots (env-up.sh, build-arm64.sh) ------------------------

# Debian mirror URL used by this host's apt (deb822 .sources or one-line).
debian_mirror() {
    local kind=$1 url   # kind: main | security
    url="$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
                awk '/^URIs:/ {print $2}'
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '/^deb[ \t]/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}'
        } | grep -E '/debian(-security)?/?$' |
            if [ "${kind}" = security ]; then grep -- '-security'; else grep -v -- '-security'; fi |
            head -n1 || true
    )"
    if [ -z "${url}" ]; then
        if [ "${kind}" = security ]; then url=http://deb.debian.org/debian-security; else url=http://deb.debian.org/debian; fi
    fi
    printf '%s\n' "${url%/}"
}


# A minimal Debian root at DIR for a chroot (env-up.sh, build-arm64.sh):
# debootstrap (extra arguments, e.g. --arch=arm64, before the suite), this
# host's mirrors in its sources.list, apt without recommends and with the
# mirror's snapshot metadata accepted past its Valid-Until (the host does the
# same), no daemons started, and /proc, /dev and /sys mounted (cleanup_rootfs
# unmounts them). The log goes beside DIR. PREFIX names an array (e.g. NICE)
# put before debootstrap.
debootstrap_rootfs() {
    local r=$1 suite=$2 mirror=$3 secmirror=$4
    local -n run_with=$5
    shift 5
    local t0=$SECONDS logfile
    logfile="$(dirname "$r")/debootstrap.log"
    "${run_with[@]}" debootstrap "$@" --variant=minbase "${suite}" "$r" "${mirror}" \
        >"${logfile}" 2>&1 || {
        tail -n 40 "${logfile}" >&2
        [ -f "$r/debootstrap/debootstrap.log" ] && tail -n 40 "$r/debootstrap/debootstrap.log" >&2
        die "debootstrap $* failed"
    }
    log "debootstrap $* done in $((SECONDS - t0))s"

    cat >"$r/etc/apt/sources.list" <<EOF
deb ${mirror} ${suite} main
deb ${mirror} ${suite}-updates main
deb ${secmirror} ${suite}-security main
EOF
    cat >"$r/etc/apt/apt.conf.d/90jhswarm" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 0755 "$r/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount --make-rslave "$r/dev"
    mount -t sysfs sysfs "$r/sys"
}


# In the root DIR that debootstrap_rootfs made: ROOTFS_PACKAGES, a venv in
# /opt/venv and /srv/jupyterhub, by a chroot run through the command prefix
# in the array PREFIX (e.g. NICE; the log in ROOTFS_WORK/chroot.log); CHECK,
# a shell line run in the chroot first (e.g. its architecture); WHAT names
# the root in the messages. Then /proc, /dev and /sys unmounted and apt's
# lists, caches, logs and the policy-rc.d removed, ready to be an image.
provision_rootfs() {
    local r=$1 what=$3 check=${4:-true} t0=$SECONDS m
    local -n chroot_with=$2
    "${chroot_with[@]}" chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/root /bin/sh -euc "
            ${check}
            apt-get update -q
            apt-get install -y -q --no-install-recommends ${ROOTFS_PACKAGES}
            python3 -m venv /opt/venv
            /opt/venv/bin/python -m pip --version
            mkdir -p /srv/jupyterhub
            apt-get clean
        " >"${ROOTFS_WORK}/chroot.log" 2>&1 || {
        tail -n 40 "${ROOTFS_WORK}/chroot.log" >&2
        die "package installation in ${what} failed"
    }
    log "${what}: apt install + venv done in $((SECONDS - t0))s"

    for m in "$r/sys" "$r/dev" "$r/proc"; do umount -R "$m"; done
    if findmnt -rno TARGET | grep -qF "$r/"; then die "mounts still present under $r"; fi
    rm -f "$r/usr/sbin/policy-rc.d"
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/log/*.log \
        "$r"/var/cache/debconf/*-old "$r"/tmp/* "$r"/root/.cache
    : >"$r/etc/resolv.conf"
}

# Extra CA certificates of this host, a file a line (a TLS-inspecting egress
# proxy signs pypi/npm traffic; env-up.sh, build-arm64.sh). Prefer the
# locally added certs; fall back to the bundle.
host_ca_files() {
    local files
    files="$(find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort || true)"
    if [ -n "${files}" ]; then printf '%s\n' "${files}"; else echo /etc/ssl/certs/ca-certificates.crt; fi
}

# Remove the rootfs work directory ROOTFS_WORK (env-up.sh, build-arm64.sh)
# and whatever is still mounted below it.
cleanup_rootfs() {
    [ -n "${ROOTFS_WORK:-}" ] || return 0
    local m
    # unmount everything below the rootfs, deepest first
    for m in $(findmnt -rno TARGET | { grep -F "${ROOTFS_WORK}/" || true; } | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if findmnt -rno TARGET | grep -qF "${ROOTFS_WORK}/"; then
        log "WARNING: mounts left under ${ROOTFS_WORK}; not deleting it"
    else
        rm -rf --one-file-system "${ROOTFS_WORK}"
    fi
    ROOTFS_WORK=""
}

# --- the tests' image registry (scripts/registry-up.sh; the script defines
# `docker` for registry_push) --------------------------------------------------
# Debian's docker-registry (CNCF distribution 2.8), run by hand with its own
# configuration (the package's /etc/docker/registry/config.yml wants an
# htpasswd file and listens on every address), in the background with
# setsid: there is no systemd here. Its pid is in ${REGISTRY_DIR}/registry.pid.

# Each listener is one docker-registry process on one address (default
# ${REGISTRY_ADDR}), all of them on the same storage; its files are
# ${REGISTRY_DIR}/config.yml and registry.pid for ${REGISTRY_ADDR}, and
# config-<addr>.yml and registry-<addr>.pid for another address.
registry_file() { # registry_file ADDR config|pid
    if [ "$1" = "${REGISTRY_ADDR}" ]; then
        [ "$2" = config ] && echo "${REGISTRY_DIR}/config.yml" || echo "${REGISTRY_DIR}/registry.pid"
    else
        [ "$2" = config ] && echo "${REGISTRY_DIR}/config-${1//:/_}.yml" ||
            echo "${REGISTRY_DIR}/registry-${1//:/_}.pid"
    fi
}

registry_answers() { # [ADDR]
    curl -fsS -m 5 -o /dev/null "http://${1:-${REGISTRY_ADDR}}/v2/" 2>/dev/null
}

registry_pid() { # [ADDR]
    local p
    p="$(cat "$(registry_file "${1:-${REGISTRY_ADDR}}" pid)" 2>/dev/null)" || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && printf '%s\n' "$p"
}

registry_write_config() { # ADDR
    local config
    config="$(registry_file "$1" config)"
    mkdir -p "${REGISTRY_DIR}/data"
    cat >"${config}.new" <<EOF
# written by scripts/registry-up.sh (scripts/lib.sh: registry_write_config)
version: 0.1
log:
  level: info
  fields:
    service: jhswarm-registry
storage:
  filesystem:
    rootdirectory: ${REGISTRY_DIR}/data
  delete:
    enabled: true
http:
  addr: $1
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    mv "${config}.new" "${config}"
}

# registry_up [ADDR]: install docker-registry if missing and make it answer
# on ADDR (default ${REGISTRY_ADDR}); only a check when it already does. A
# listener that runs but does not answer (its address gone: the cluster's
# bridge was removed) is stopped and started again.
registry_up() {
    local addr="${1:-${REGISTRY_ADDR}}" pid i
    apt_install docker-registry curl
    [ -x /usr/bin/docker-registry ] || die "/usr/bin/docker-registry missing after installing docker-registry"
    if registry_answers "${addr}"; then
        log "registry answers on http://${addr}/v2/ (pid $(registry_pid "${addr}" || echo '?'))"
        return 0
    fi
    if pid="$(registry_pid "${addr}")"; then
        log "registry (pid ${pid}) runs but does not answer on ${addr}; starting it again"
        registry_stop "${addr}"
    fi
    registry_write_config "${addr}"
    log "starting docker-registry on ${addr} (storage ${REGISTRY_DIR}/data, log ${REGISTRY_LOG})"
    setsid nohup /usr/bin/docker-registry serve "$(registry_file "${addr}" config)" \
        >>"${REGISTRY_LOG}" 2>&1 </dev/null &
    pid=$!
    disown || true
    printf '%s\n' "${pid}" >"$(registry_file "${addr}" pid)"
    for i in $(seq 1 60); do
        if registry_answers "${addr}"; then
            log "registry up on ${addr} after ~${i}s (pid ${pid})"
            return 0
        fi
        if ! kill -0 "${pid}" 2>/dev/null; then
            tail -n 20 "${REGISTRY_LOG}" >&2 || true
            die "docker-registry (pid ${pid}) exited; see ${REGISTRY_LOG} (is ${addr} taken by another program, or not an address of this machine?)"
        fi
        sleep 1
    done
    tail -n 20 "${REGISTRY_LOG}" >&2 || true
    die "docker-registry did not answer on http://${addr}/v2/ within 60s; see ${REGISTRY_LOG}"
}

# registry_stop [ADDR]: stop the listener registry_up started on ADDR (the
# data stays)
registry_stop() {
    local addr="${1:-${REGISTRY_ADDR}}" pid i
    if ! pid="$(registry_pid "${addr}")"; then
        log "registry not running on ${addr}"
        return 0
    fi
    kill "${pid}"
    for i in $(seq 1 20); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "${pid}" 2>/dev/null; then kill -9 "${pid}"; fi
    rm -f "$(registry_file "${addr}" pid)"
    log "registry (pid ${pid}) on ${addr} stopped"
}

# registry_tag_digest NAME:TAG: the digest the registry serves for the tag
# (empty when it has none)
registry_tag_digest() {
    curl -fsS -m 10 -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://${REGISTRY_ADDR}/v2/${1%:*}/manifests/${1##*:}" 2>/dev/null |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}' || true
}

# registry_push IMAGE...: tag each local IMAGE as ${REGISTRY_ADDR}/IMAGE and
# push it, unless the registry's tag already points at this image's digest
registry_push() {
    local image ref pushed served
    for image in "$@"; do
        ref="${REGISTRY_ADDR}/${image}"
        docker image inspect "${image}" >/dev/null 2>&1 ||
            die "no local image ${image} to push (scripts/env-up.sh builds it)"
        docker tag "${image}" "${ref}"
        # the digest an earlier push of this very image got, if any
        pushed="$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "${ref}" |
            { grep -F "${REGISTRY_ADDR}/${image%:*}@" || true; } | head -n1)"
        served="$(registry_tag_digest "${image}")"
        if [ -n "${pushed}" ] && [ "${pushed#*@}" = "${served}" ]; then
            log "${ref} already in the registry (${served})"
            continue
        fi
        docker push "${ref}" >/dev/null || die "docker push ${ref} failed"
        log "pushed ${ref} ($(registry_tag_digest "${image}"))"
    done
}
