#!/usr/bin/env bash
# shellcheck disable=SC2016  # docker --format templates and sh -c bodies are single-quoted on purpose
# A real 3-node Docker Swarm on this one machine, for placement / GPU tests.
#
# Each node is its own dockerd (with its own containerd, data root and
# hostname) inside a network namespace; the namespaces hang off a private
# bridge on the host. Nothing here touches the host's main dockerd or its
# swarm: that engine is only read from by `load` (docker save).
#
#   node1  10.200.0.11  manager                         zone=a
#   node2  10.200.0.12  worker  calculation_type=cpu    zone=b
#   node3  10.200.0.13  worker  calculation_type=gpu    zone=b
#                       + 2 fake GPUs: generic resource NVIDIA-GPU=GPU-fake0,GPU-fake1
#
# Usage: scripts/cluster.sh up | down [--keep-logs] | stop NODE... | status | env | load IMAGE...
#
#   up       create (or repair / reuse) the bridge, namespaces, dockerds, the
#            swarm and the node labels; waits until all nodes are Ready.
#            Idempotent: a second run only checks (~1 s; cold ~3 s).
#   down     stop the dockerds (and their containers), remove namespaces,
#            bridge, the iptables rules added by `up`, data and run dirs
#            (and the logs unless --keep-logs). Idempotent.
#   stop     a node going down: SIGKILL to its dockerd, then to what ran
#            for it (containerd, shims, containers), so it reports nothing
#            to the swarm; `up` starts it again and waits until it is Ready.
#   status   print the state; exit 0 only if everything is up and Ready.
#   env      print `export` lines describing the cluster (eval "$(... env)").
#   load     copy images from the host's engine into every node (docker save
#            once to /var/tmp, docker load into the nodes in parallel; skipped
#            where the same image ID is already there). Or pull from the tests'
#            registry: `registry-up.sh cluster` serves it at 10.200.0.1:5000
#            (CLUSTER_REGISTRY_ADDR), an insecure registry for every node.
#            ~30-60 s for a 500 MB image on 2 cores.
#
# Talk to a node:  docker -H unix:///run/jhs-cluster/node1.sock ...
#
# Limits of this kernel (no IPVS): swarm VIPs and the ingress routing mesh do
# not route. Use `--endpoint-mode dnsrr` (names resolve to task addresses) and
# `--publish mode=host,...` ports (reachable from the host at 10.200.0.1x).
# The nodes have no default route: nothing leaves the machine, image pulls
# fail fast (use `load`, and `--no-resolve-image` / `--resolve-image never`),
# except from the tests' registry on the bridge (above).
#
# Environment:
#   JHS_CLUSTER_STORAGE_DRIVER   force a storage driver (default: overlay2 if an
#                                overlay mount works under the data root, else vfs)
#   JHS_CLUSTER_WAIT             seconds to wait for daemons / Ready (default 90)
set -Eeuo pipefail
export PATH="${PATH}:/usr/sbin:/sbin" # dockerd, ip, iptables

LOG_TAG=cluster
STEP_MS=1 # step: durations in ms (most steps take well under a second)
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # log, die, need_root, step, now_ms, fmt_ms

# --- layout -------------------------------------------------------------------
NODES=(node1 node2 node3)
declare -A NODE_IP=([node1]=10.200.0.11 [node2]=10.200.0.12 [node3]=10.200.0.13)
declare -A NODE_BIP=([node1]=172.31.1.1/24 [node2]=172.31.2.1/24 [node3]=172.31.3.1/24)
# local (bridge) networks of each node, e.g. docker_gwbridge; each node has its
# own namespace, distinct pools only keep the addresses easy to tell apart
declare -A NODE_POOL=([node1]=172.30.16.0/20 [node2]=172.30.32.0/20 [node3]=172.30.48.0/20)
declare -A NODE_LABELS=(
    [node1]="zone=a"
    [node2]="calculation_type=cpu zone=b"
    [node3]="calculation_type=gpu zone=b"
)
MANAGER=node1
CPU_NODE=node2
GPU_NODE=node3
GPU_RESOURCE=NVIDIA-GPU
GPU_IDS=(GPU-fake0 GPU-fake1)

BRIDGE=jhs-br0
BRIDGE_ADDR=${CLUSTER_HOST_ADDR}/24 # lib.sh
SUBNET=10.200.0.0/24
SWARM_ADDR_POOL=10.201.0.0/16 # overlay networks of the test swarm

RUN_DIR=/run/jhs-cluster
DATA_DIR=/var/lib/jhs-cluster
LOG_PREFIX=/var/log/jhs-cluster-
LOCK_FILE=/run/jhs-cluster.lock
IPT_COMMENT=jhs-cluster
WAIT=${JHS_CLUSTER_WAIT:-90}

export DOCKER_CLI_HINTS=false

ns_of() { echo "jhs-$1"; }           # network namespace name
veth_host() { echo "jhsv-$1"; }      # host end of the node's veth (<= 15 chars)
sock_of() { echo "${RUN_DIR}/$1.sock"; }
pidfile_of() { echo "${RUN_DIR}/$1.pid"; }
log_of() { echo "${LOG_PREFIX}$1.log"; }
ndocker() { local n=$1; shift; docker -H "unix://$(sock_of "$n")" "$@"; }

# --- output (log, die, the ERR trap, step: scripts/lib.sh) -----------------------
take_lock() {
    mkdir -p "$(dirname "${LOCK_FILE}")"
    exec 9>"${LOCK_FILE}"
    flock -w 600 9 || die "another cluster.sh holds ${LOCK_FILE}"
}

# --- processes ----------------------------------------------------------------
# pid of the node's dockerd if it runs (and is ours), else nothing
dockerd_pid() {
    local n=$1 pid
    pid="$(cat "$(pidfile_of "$n")" 2>/dev/null || true)"
    [ -n "${pid}" ] && [ -r "/proc/${pid}/cmdline" ] || return 0
    local cmd
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline" || true)"
    case "${cmd}" in *"$(sock_of "$n")"*) echo "${pid}" ;; esac
}

# does the dockerd run inside the node's namespace (not a stale one)?
dockerd_in_ns() {
    local n=$1 pid=$2 a b
    a="$(stat -L -c %i "/proc/${pid}/ns/net" 2>/dev/null || true)"
    b="$(stat -L -c %i "/run/netns/$(ns_of "$n")" 2>/dev/null || true)"
    [ -n "$a" ] && [ "$a" = "$b" ]
}

engine_answers() { timeout 15 docker -H "unix://$(sock_of "$1")" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# processes started on behalf of a node (containerd, shims, docker-proxy...):
# found by the node's run directory in their command line or their pid file
node_pids() {
    local n=$1 p cmd
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" != "$$" ] || continue
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)"
        case "${cmd}" in *"${RUN_DIR}/$n/"* | *"${RUN_DIR}/$n."*) echo "${p#/proc/}" ;; esac
    done
    return 0
}

# --- network ------------------------------------------------------------------
ipt_rule() { # ipt_rule add|del CHAIN ARGS...
    local op=$1 chain=$2
    shift 2
    if [ "${op}" = add ]; then
        iptables -w -C "${chain}" "$@" -m comment --comment "${IPT_COMMENT}" -j ACCEPT 2>/dev/null ||
            iptables -w -I "${chain}" 1 "$@" -m comment --comment "${IPT_COMMENT}" -j ACCEPT
    else
        while iptables -w -C "${chain}" "$@" -m comment --comment "${IPT_COMMENT}" -j ACCEPT 2>/dev/null; do
            iptables -w -D "${chain}" "$@" -m comment --comment "${IPT_COMMENT}" -j ACCEPT
        done
    fi
}

# a /run/netns entry that is not a mounted namespace (e.g. left by a reboot
# when /run is not a tmpfs) makes `ip netns add` fail: drop it
netns_usable() {
    local f="/run/netns/$1"
    [ -e "$f" ] || return 1
    if [ "$(findmnt -rn --mountpoint "$f" -o FSTYPE 2>/dev/null || true)" != nsfs ]; then
        log "stale netns file $f; removing"
        ip netns del "$1" 2>/dev/null || rm -f "$f"
        return 1
    fi
}

ensure_network() {
    local n ns vh
    if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
        ip link add "${BRIDGE}" type bridge
        log "created bridge ${BRIDGE}"
    fi
    case "$(ip -o addr show dev "${BRIDGE}")" in
        *" inet ${BRIDGE_ADDR} "*) ;;
        *) ip addr add "${BRIDGE_ADDR}" dev "${BRIDGE}" ;;
    esac
    ip link set "${BRIDGE}" up
    sysctl -qw "net.ipv6.conf.${BRIDGE}.disable_ipv6=1" 2>/dev/null || true

    for n in "${NODES[@]}"; do
        ns="$(ns_of "$n")" vh="$(veth_host "$n")"
        if ! netns_usable "${ns}"; then
            ip netns add "${ns}"
            log "created netns ${ns}"
        fi
        if ! ip -n "${ns}" link show eth0 >/dev/null 2>&1; then
            ip link del "${vh}" 2>/dev/null || true
            ip link add "${vh}" type veth peer name eth0 netns "${ns}"
            log "created veth ${vh} <-> ${ns}:eth0"
        fi
        ip link set "${vh}" master "${BRIDGE}" 2>/dev/null || true
        sysctl -qw "net.ipv6.conf.${vh}.disable_ipv6=1" 2>/dev/null || true
        ip link set "${vh}" up
        ip -n "${ns}" link set lo up
        case "$(ip -n "${ns}" -o addr show dev eth0)" in
            *" inet ${NODE_IP[$n]}/24 "*) ;;
            *) ip -n "${ns}" addr add "${NODE_IP[$n]}/24" dev eth0 ;;
        esac
        ip -n "${ns}" link set eth0 up
    done

    # the host's dockerd sets FORWARD policy DROP and bridged frames pass
    # through iptables (br_netfilter): let the nodes talk to each other
    # (2377/tcp, 7946/tcp+udp, 4789/udp VXLAN) and to/from the host
    ipt_rule add FORWARD -i "${BRIDGE}" -o "${BRIDGE}"
    ipt_rule add INPUT -i "${BRIDGE}" -s "${SUBNET}"
}

# --- daemons ------------------------------------------------------------------
STORAGE_DRIVER=""
pick_storage_driver() {
    if [ -n "${JHS_CLUSTER_STORAGE_DRIVER:-}" ]; then
        STORAGE_DRIVER=${JHS_CLUSTER_STORAGE_DRIVER}
    elif [ -f "${DATA_DIR}/storage-driver" ]; then
        STORAGE_DRIVER="$(cat "${DATA_DIR}/storage-driver")" # keep what the data was made with
    else
        local p="${DATA_DIR}/.overlay-probe"
        mkdir -p "$p"/{l,u,w,m}
        if mount -t overlay overlay -o "lowerdir=$p/l,upperdir=$p/u,workdir=$p/w" "$p/m" 2>/dev/null; then
            umount "$p/m"
            STORAGE_DRIVER=overlay2
        else
            STORAGE_DRIVER=vfs
            log "overlay mounts fail under ${DATA_DIR}: using the vfs storage driver (slow, big)"
        fi
        rm -rf "$p"
    fi
    mkdir -p "${DATA_DIR}"
    echo "${STORAGE_DRIVER}" >"${DATA_DIR}/storage-driver"
}

start_dockerd() {
    local n=$1 i=$2 ns sock args g
    ns="$(ns_of "$n")" sock="$(sock_of "$n")"
    mkdir -p "${DATA_DIR}/$n" "${RUN_DIR}/$n"
    # own config file: never read the host's /etc/docker/daemon.json; own
    # key, hence engine ID (else all share /etc/docker/key.json with the host)
    printf '{"deprecated-key-path": "%s"}\n' "${DATA_DIR}/$n/key.json" >"${RUN_DIR}/$n.json"
    # a pid file of a containerd that just died (maybe still an unreaped
    # zombie, or its pid reused) makes dockerd wait for it and time out
    rm -f "$(pidfile_of "$n")" "${sock}" "${RUN_DIR}/$n/containerd/containerd.pid"
    args=(
        --config-file "${RUN_DIR}/$n.json"
        --data-root "${DATA_DIR}/$n"
        --exec-root "${RUN_DIR}/$n"
        --pidfile "$(pidfile_of "$n")"
        -H "unix://${sock}"
        --storage-driver "${STORAGE_DRIVER}"
        --bip "${NODE_BIP[$n]}"
        --default-address-pool "base=${NODE_POOL[$n]},size=24"
        --cgroup-parent "/jhs-cluster-$n"
        --swarm-default-advertise-addr "${NODE_IP[$n]}"
        --label "jhs-cluster.node=$n"
        # the tests' registry as the nodes reach it (registry-up.sh cluster)
        --insecure-registry "${CLUSTER_REGISTRY_ADDR}"
    )
    if [ "$n" = "${GPU_NODE}" ]; then
        for g in "${GPU_IDS[@]}"; do args+=(--node-generic-resource "${GPU_RESOURCE}=$g"); done
    fi
    {
        echo "=== $(date -Is) cluster.sh: starting dockerd for $n (netns ${ns})"
    } >>"$(log_of "$n")"
    # nsenter --net (not `ip netns exec`, which remounts /sys and loses the
    # cgroup mounts); a UTS namespace gives the node its own hostname.
    # 9>&-: the daemon must not inherit (and so hold) our lock.
    setsid nsenter --net="/run/netns/${ns}" -- \
        unshare --uts -- /bin/sh -c 'hostname "$1" && shift && exec "$@"' sh "$n" \
        dockerd "${args[@]}" >>"$(log_of "$n")" 2>&1 </dev/null 9>&- &
    disown || true
    log "$n: dockerd starting (${STORAGE_DRIVER}, log $(log_of "$n"))"
}

stop_dockerd() {
    local n=$1 pid i
    pid="$(dockerd_pid "$n")"
    [ -n "${pid}" ] || return 0
    if [ "${2:-}" = fast ] && engine_answers "$n"; then
        # no graceful stop for the containers: dockerd would give each one
        # its stop timeout (10s; PID-1 processes often ignore SIGTERM)
        ndocker "$n" ps -q | xargs -r timeout 20 docker -H "unix://$(sock_of "$n")" kill >/dev/null 2>&1 || true
    fi
    log "$n: stopping dockerd (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for i in $(seq 1 60); do
        [ -d "/proc/${pid}" ] || break
        sleep 0.5
    done
    if [ -d "/proc/${pid}" ]; then
        log "$n: dockerd still there after 30s; SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        sleep 0.5
    fi
}

ensure_daemons() {
    local n i=0 pid started=() t0
    pick_storage_driver
    for n in "${NODES[@]}"; do
        i=$((i + 1))
        pid="$(dockerd_pid "$n")"
        if [ -n "${pid}" ] && ! dockerd_in_ns "$n" "${pid}"; then
            log "$n: dockerd ${pid} is not in netns $(ns_of "$n") (stale); restarting it"
            stop_dockerd "$n"
            pid=""
        fi
        if [ -n "${pid}" ] && engine_answers "$n" && ! knows_registry "$n"; then
            log "$n: dockerd ${pid} was started without --insecure-registry ${CLUSTER_REGISTRY_ADDR}; restarting it"
            stop_dockerd "$n"
            pid=""
        fi
        if [ -n "${pid}" ]; then
            if engine_answers "$n"; then
                log "$n: dockerd running (pid ${pid})"
                continue
            fi
            log "$n: dockerd ${pid} exists; waiting for it to answer"
        else
            kill_leftovers "$n"
            start_dockerd "$n" "$i"
        fi
        started+=("$n")
    done
    [ ${#started[@]} -gt 0 ] || return 0
    t0=$SECONDS
    for n in "${started[@]}"; do
        until engine_answers "$n"; do
            if [ -z "$(dockerd_pid "$n")" ] && [ $((SECONDS - t0)) -gt 5 ]; then
                tail -n 30 "$(log_of "$n")" >&2 || true
                die "$n: dockerd exited; see $(log_of "$n")"
            fi
            [ $((SECONDS - t0)) -lt "${WAIT}" ] || {
                tail -n 30 "$(log_of "$n")" >&2 || true
                die "$n: dockerd does not answer after ${WAIT}s; see $(log_of "$n")"
            }
            sleep 0.3
        done
        log "$n: dockerd answers ($(ndocker "$n" info --format '{{.Driver}}, hostname {{.Name}}'))"
    done
}

# does the node's dockerd take the tests' registry as insecure (plain HTTP)?
knows_registry() {
    ndocker "$1" info --format '{{range $k, $v := .RegistryConfig.IndexConfigs}}{{$k}} {{end}}' \
        2>/dev/null | tr ' ' '\n' | grep -qxF "${CLUSTER_REGISTRY_ADDR}"
}

# processes of a node whose dockerd is gone (containerd, shims)
kill_leftovers() {
    local n=$1 pids
    pids="$(node_pids "$n" | tr '\n' ' ')"
    [ -n "${pids// /}" ] || return 0
    log "$n: killing leftover processes: ${pids}"
    # shellcheck disable=SC2086
    kill -TERM ${pids} 2>/dev/null || true
    sleep 1
    pids="$(node_pids "$n" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    [ -z "${pids// /}" ] || kill -KILL ${pids} 2>/dev/null || true
}

# --- swarm --------------------------------------------------------------------
swarm_state() { ndocker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }
swarm_node_id() { ndocker "$1" info --format '{{.Swarm.NodeID}}' 2>/dev/null || true; }

# wait while a node is "pending" (reconnecting after a restart)
settle_swarm_state() {
    local n=$1 s i
    for i in $(seq 1 60); do
        s="$(swarm_state "$n")"
        [ "$s" = pending ] || { echo "$s"; return 0; }
        sleep 0.5
    done
    echo "$s"
}

ensure_manager() {
    local n=${MANAGER} s ctl addr
    s="$(settle_swarm_state "$n")"
    if [ "$s" = active ]; then
        ctl="$(ndocker "$n" info --format '{{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}}')"
        if [ "${ctl}" = "true ${NODE_IP[$n]}" ]; then
            log "$n: swarm manager already active (${NODE_IP[$n]})"
            return 0
        fi
        log "$n: swarm active but not as manager at ${NODE_IP[$n]} (${ctl}); re-initialising"
        ndocker "$n" swarm leave --force >/dev/null 2>&1 || true
    elif [ "$s" != inactive ]; then
        log "$n: swarm state '$s'; leaving and re-initialising"
        ndocker "$n" swarm leave --force >/dev/null 2>&1 || true
    fi
    addr=${NODE_IP[$n]}
    ndocker "$n" swarm init --advertise-addr "${addr}" --listen-addr "${addr}:2377" \
        --default-addr-pool "${SWARM_ADDR_POOL}" --default-addr-pool-mask-length 24 >/dev/null
    log "$n: swarm initialised (manager ${addr}:2377)"
}

ensure_worker() {
    local n=$1 s id token stale
    s="$(settle_swarm_state "$n")"
    id="$(swarm_node_id "$n")"
    if [ "$s" = active ] && [ -n "${id}" ] &&
        ndocker "${MANAGER}" node inspect "${id}" >/dev/null 2>&1; then
        log "$n: already in the swarm (node ${id})"
        return 0
    fi
    if [ "$s" != inactive ]; then
        log "$n: swarm state '$s' (node '${id}') not in this swarm; leaving"
        ndocker "$n" swarm leave --force >/dev/null 2>&1 || true
    fi
    # entries left by an earlier life of this node
    stale="$(ndocker "${MANAGER}" node ls --format '{{.ID}} {{.Hostname}}' | awk -v h="$n" '$2 == h {print $1}')"
    if [ -n "${stale}" ]; then
        log "$n: removing stale node entries: $(echo "${stale}" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        ndocker "${MANAGER}" node rm --force ${stale} >/dev/null
    fi
    token="$(ndocker "${MANAGER}" swarm join-token -q worker)"
    ndocker "$n" swarm join --token "${token}" --advertise-addr "${NODE_IP[$n]}" \
        --listen-addr "${NODE_IP[$n]}:2377" "${NODE_IP[${MANAGER}]}:2377" >/dev/null
    log "$n: joined the swarm as a worker"
}

ensure_swarm() {
    local n
    ensure_manager
    for n in "${NODES[@]}"; do
        [ "$n" = "${MANAGER}" ] || ensure_worker "$n"
    done
}

ensure_labels() {
    local n id have kv add
    for n in "${NODES[@]}"; do
        id="$(swarm_node_id "$n")"
        have="$(ndocker "${MANAGER}" node inspect "${id}" \
            --format '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}} {{end}}')"
        add=()
        for kv in ${NODE_LABELS[$n]}; do
            case " ${have} " in *" ${kv} "*) ;; *) add+=(--label-add "${kv}") ;; esac
        done
        if [ ${#add[@]} -eq 0 ]; then
            log "$n: labels ok (${NODE_LABELS[$n]})"
        else
            ndocker "${MANAGER}" node update "${add[@]}" "${id}" >/dev/null
            log "$n: labels set (${NODE_LABELS[$n]})"
        fi
    done
}

nodes_ready() {
    local n id st
    for n in "${NODES[@]}"; do
        id="$(swarm_node_id "$n")"
        [ -n "${id}" ] || return 1
        st="$(ndocker "${MANAGER}" node inspect "${id}" --format '{{.Status.State}} {{.Spec.Availability}}' 2>/dev/null || true)"
        [ "${st}" = "ready active" ] || return 1
    done
}

wait_ready() {
    local t0=$SECONDS
    until nodes_ready; do
        [ $((SECONDS - t0)) -lt "${WAIT}" ] || {
            ndocker "${MANAGER}" node ls >&2 || true
            die "nodes not all Ready after ${WAIT}s"
        }
        sleep 0.5
    done
    # the GPU node must advertise its fake GPUs
    local gpus
    gpus="$(ndocker "${MANAGER}" node inspect "$(swarm_node_id "${GPU_NODE}")" \
        --format '{{range .Description.Resources.GenericResources}}{{with .NamedResourceSpec}}{{.Kind}}={{.Value}} {{end}}{{end}}')"
    for g in "${GPU_IDS[@]}"; do
        case " ${gpus} " in *" ${GPU_RESOURCE}=$g "*) ;; *) die "${GPU_NODE} does not advertise ${GPU_RESOURCE}=$g (has: ${gpus})" ;; esac
    done
    ndocker "${MANAGER}" node ls >&2
}

# --- subcommands --------------------------------------------------------------
preflight() {
    local c
    for c in docker dockerd ip iptables nsenter unshare setsid flock findmnt; do
        command -v "$c" >/dev/null || die "missing command: $c"
    done
    [ -e /proc/net/ip_vs ] || log "note: no IPVS in this kernel: use dnsrr endpoints and host-mode ports"
}

cmd_up() {
    local t0
    need_root
    t0=$(now_ms)
    take_lock
    step "preflight" preflight
    step "network: bridge ${BRIDGE}, netns, veths, iptables" ensure_network
    step "dockerds" ensure_daemons
    step "swarm" ensure_swarm
    step "node labels" ensure_labels
    step "wait for all nodes Ready" wait_ready
    log "cluster up in $(fmt_ms $(($(now_ms) - t0))); manager: docker -H unix://$(sock_of "${MANAGER}")"
}

unmount_under() { # unmount everything below a directory, deepest first
    local d=$1 m
    findmnt -rn -o TARGET | awk -v d="$d/" 'index($0, d) == 1' | sort -r | while read -r m; do
        m="$(printf '%b' "$m")" # findmnt -r escapes blanks as \x20
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "WARNING: cannot unmount $m"
    done
}

cmd_stop() {
    local n pid
    need_root
    [ $# -gt 0 ] || die "usage: cluster.sh stop NODE..."
    take_lock
    for n in "$@"; do
        case " ${NODES[*]} " in *" $n "*) ;; *) die "no node $n (nodes: ${NODES[*]})" ;; esac
        pid="$(dockerd_pid "$n")"
        log "$n: going down (SIGKILL to dockerd ${pid:-none} and its processes)"
        [ -z "${pid}" ] || kill -KILL "${pid}" 2>/dev/null || true
        kill_leftovers "$n"
    done
}

cmd_down() {
    local n keep_logs=0 t0
    [ "${1:-}" = --keep-logs ] && keep_logs=1
    need_root
    t0=$(now_ms)
    take_lock
    for n in "${NODES[@]}"; do stop_dockerd "$n" fast & done
    wait
    for n in "${NODES[@]}"; do kill_leftovers "$n"; done
    log "dockerds stopped ($(fmt_ms $(($(now_ms) - t0))))"
    unmount_under "${RUN_DIR}"
    unmount_under "${DATA_DIR}"
    for n in "${NODES[@]}"; do
        if [ -e "/run/netns/$(ns_of "$n")" ]; then
            ip netns del "$(ns_of "$n")" 2>/dev/null || rm -f "/run/netns/$(ns_of "$n")"
            log "removed netns $(ns_of "$n")"
        fi
        ip link del "$(veth_host "$n")" 2>/dev/null || true
        [ "${keep_logs}" = 1 ] || rm -f "$(log_of "$n")"
    done
    if ip link show "${BRIDGE}" >/dev/null 2>&1; then
        ip link del "${BRIDGE}"
        log "removed bridge ${BRIDGE}"
    fi
    ipt_rule del FORWARD -i "${BRIDGE}" -o "${BRIDGE}"
    ipt_rule del INPUT -i "${BRIDGE}" -s "${SUBNET}"
    # the nodes' cgroup parents (empty once their containers are gone)
    for n in "${NODES[@]}"; do
        find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "jhs-cluster-$n" -print0 2>/dev/null |
            xargs -0 -r rmdir 2>/dev/null || true
    done
    log "network removed ($(fmt_ms $(($(now_ms) - t0))))"
    rm -rf --one-file-system "${DATA_DIR}" "${RUN_DIR}"
    log "cluster down in $(fmt_ms $(($(now_ms) - t0)))"
}

cmd_status() {
    local n pid ok=0 s
    trap - ERR # a report; a reader that stops early (| head) is no error
    if ip link show "${BRIDGE}" >/dev/null 2>&1; then
        echo "bridge ${BRIDGE}: $(ip -br addr show dev "${BRIDGE}" | awk '{print $2, $3}')"
    else
        echo "bridge ${BRIDGE}: absent"
        ok=1
    fi
    for n in "${NODES[@]}"; do
        pid="$(dockerd_pid "$n")"
        if [ -z "${pid}" ]; then
            echo "$n: ${NODE_IP[$n]} netns $( [ -e "/run/netns/$(ns_of "$n")" ] && echo present || echo absent), dockerd not running"
            ok=1
        elif ! engine_answers "$n"; then
            echo "$n: ${NODE_IP[$n]} dockerd pid ${pid} not answering"
            ok=1
        else
            s="$(ndocker "$n" info --format '{{.Swarm.LocalNodeState}} node={{.Swarm.NodeID}} manager={{.Swarm.ControlAvailable}} driver={{.Driver}}')"
            echo "$n: ${NODE_IP[$n]} dockerd pid ${pid}, swarm ${s}, sock $(sock_of "$n")"
            case "$s" in active*) ;; *) ok=1 ;; esac
        fi
    done
    if [ -n "$(dockerd_pid "${MANAGER}")" ] && engine_answers "${MANAGER}" &&
        [ "$(swarm_state "${MANAGER}")" = active ]; then
        ndocker "${MANAGER}" node ls --format '{{.ID}}' | while read -r id; do
            ndocker "${MANAGER}" node inspect "${id}" --format \
                '  {{.Description.Hostname}} {{.Spec.Role}} {{.Status.State}}/{{.Spec.Availability}} addr={{.Status.Addr}} labels={{range $k, $v := .Spec.Labels}}{{$k}}={{$v}},{{end}} resources={{range .Description.Resources.GenericResources}}{{with .NamedResourceSpec}}{{.Kind}}={{.Value}},{{end}}{{end}}'
        done
        nodes_ready || ok=1
    else
        ok=1
    fi
    if [ "${ok}" = 0 ]; then echo "status: up"; else echo "status: NOT up"; fi
    exit "${ok}"
}

cmd_env() {
    local n N
    echo "export CLUSTER_MANAGER=${MANAGER}"
    echo "export CLUSTER_MANAGER_SOCK=$(sock_of "${MANAGER}")"
    echo "export CLUSTER_MANAGER_HOST=unix://$(sock_of "${MANAGER}")"
    echo "export CLUSTER_MANAGER_ADDR=${NODE_IP[${MANAGER}]}"
    echo "export CLUSTER_NODES='${NODES[*]}'"
    echo "export CLUSTER_NODE_ADDRS='$(for n in "${NODES[@]}"; do printf '%s ' "${NODE_IP[$n]}"; done | sed 's/ $//')'"
    echo "export CLUSTER_CPU_NODE=${CPU_NODE}"
    echo "export CLUSTER_GPU_NODE=${GPU_NODE}"
    echo "export CLUSTER_GPU_RESOURCE=${GPU_RESOURCE}"
    echo "export CLUSTER_GPU_IDS=$(IFS=,; echo "${GPU_IDS[*]}")"
    echo "export CLUSTER_BRIDGE_ADDR=${BRIDGE_ADDR%/*}"
    echo "export CLUSTER_REGISTRY_ADDR=${CLUSTER_REGISTRY_ADDR}"
    for n in "${NODES[@]}"; do
        N="$(echo "$n" | tr '[:lower:]' '[:upper:]')"
        echo "export CLUSTER_${N}_ADDR=${NODE_IP[$n]}"
        echo "export CLUSTER_${N}_SOCK=$(sock_of "$n")"
        echo "export CLUSTER_${N}_LABELS='${NODE_LABELS[$n]}'"
    done
}

cmd_load() {
    local img id n need tmp t0 pids=() rc=0
    [ $# -gt 0 ] || die "usage: $0 load IMAGE..."
    need_root
    take_lock
    for n in "${NODES[@]}"; do engine_answers "$n" || die "$n: dockerd not answering (run: $0 up)"; done
    for img in "$@"; do
        id="$(docker image inspect -f '{{.Id}}' "${img}" 2>/dev/null)" ||
            die "image ${img} not found on the host engine"
        need=()
        for n in "${NODES[@]}"; do
            if [ "$(ndocker "$n" image inspect -f '{{.Id}}' "${img}" 2>/dev/null || true)" = "${id}" ]; then
                log "${img}: already on $n"
            elif ndocker "$n" image inspect "${id}" >/dev/null 2>&1; then
                ndocker "$n" tag "${id}" "${img}"
                log "${img}: same image already on $n; tagged"
            else
                need+=("$n")
            fi
        done
        [ ${#need[@]} -gt 0 ] || continue
        t0=$(now_ms)
        tmp="$(mktemp /var/tmp/jhs-cluster-load.XXXXXX.tar)"
        docker save -o "${tmp}" "${img}"
        pids=()
        for n in "${need[@]}"; do
            ndocker "$n" load -q -i "${tmp}" >/dev/null &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || rc=1; done
        rm -f "${tmp}"
        [ "${rc}" = 0 ] || die "${img}: docker load failed on one of: ${need[*]}"
        for n in "${need[@]}"; do
            [ "$(ndocker "$n" image inspect -f '{{.Id}}' "${img}")" = "${id}" ] ||
                die "${img}: loaded on $n but its ID differs from the host's"
        done
        for n in "${need[@]}"; do # an older image of the same tag, now untagged
            ndocker "$n" image prune -f >/dev/null 2>&1 || true
        done
        log "${img}: loaded into ${need[*]} in $(fmt_ms $(($(now_ms) - t0)))"
    done
}

usage() {
    sed -n '3,/^set -E/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    up) cmd_up ;;
    stop) shift; cmd_stop "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    load) shift; cmd_load "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
