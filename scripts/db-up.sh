#!/usr/bin/env bash
# Database servers and images for the database end-to-end tests
# (tests/e2e/test_00_databases.py), on Debian 12 as root. Idempotent: a
# second run only checks (a few seconds). Run after scripts/env-up.sh (needs
# dockerd and the swarm: the hub reaches the databases over docker_gwbridge).
#
#   1. Debian's postgresql (15) and mariadb-server, installed if missing
#   2. both listening on localhost and on the host's docker_gwbridge address
#      (the gateway, usually 172.18.0.1): a hub running as a swarm service
#      reaches them there, from an address in that bridge's subnet.
#      PostgreSQL: listen_addresses (conf.d/jhswarm.conf) and a pg_hba line
#      (scram-sha-256) for the subnet. MariaDB: bind-address
#      (mariadb.conf.d/99-jhswarm.cnf), the user limited to the subnet.
#   3. started if not running (no systemd here: pg_ctlcluster, service mariadb)
#   4. a user `jupyterhub` with a password and a database `jupyterhub`, on each.
#      Passwords are made once and kept in ${CREDENTIALS} (root only, mode
#      0600); they are never printed.
#   5. test images, cached by a hash of their inputs like env-up.sh's:
#        jhswarm-standin/postgres:15     stand-in for the official postgres
#                                        image (docker-compose.postgres.yml)
#        jhswarm-test/jupyterhub-old:4.0.2  JupyterHub 4.0.2 + NativeAuthenticator
#                                        1.2.0: the original image's generation
#        jhswarm-test/jupyterhub-old:5.5.4  JupyterHub 5.5.4 + NativeAuthenticator
#                                        1.3.0: this project's previous image's
#                                        (both make databases to upgrade)
#
# Environment: JHSWARM_USE_REAL_IMAGES=1 skips the postgres stand-in (the
# tests then pull postgres:16) and builds the old hubs on the real
# quay.io/jupyterhub/jupyterhub:4.0.2 and :5.5.4.
set -Eeuo pipefail

LOG_TAG=db-up
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # log, die, step, apt_install, cached images; the tags

CREDENTIALS=/var/lib/jhswarm/db.env
PG_VERSION=15
PG_CLUSTER=main
DB_NAME=jupyterhub
DB_USER=jupyterhub
# (ROOTFS_TAG and PREVIOUS_HUB_TAG, stand-ins env-up.sh builds: scripts/lib.sh)
PG_IMAGE_TAG="jhswarm-standin/postgres:15"
# the earlier hub generations: version and pip pins
OLD_HUBS=(
    "4.0.2|jupyterhub==4.0.2 jupyterhub-nativeauthenticator==1.2.0 SQLAlchemy==2.0.19 alembic==1.11.1 tornado==6.3.2 psycopg2-binary==2.9.6 PyMySQL==1.1.0"
    "5.5.4|jupyterhub==5.5.4 jupyterhub-nativeauthenticator==1.3.0 psycopg2-binary==2.9.13 pymysql==1.2.4"
)
MARK="# jhswarm db-up.sh"

export DEBIAN_FRONTEND=noninteractive
export DOCKER_BUILDKIT=0
DOCKER="${DOCKER:-$(command -v docker || echo /usr/bin/docker)}"

T_START=$SECONDS

need_root
docker() { "${DOCKER}" "$@"; }

# --- 1. packages ----------------------------------------------------------------
install_packages() {
    # no service starts from maintainer scripts (no systemd; apt_install sees
    # to that): we start below
    apt_install postgresql mariadb-server
}

# --- 2. where the hub reaches the host -----------------------------------------
GW=""
SUBNET=""
gateway() {
    local cfg
    cfg="$(docker network inspect docker_gwbridge \
        -f '{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}' 2>/dev/null)" ||
        die "no docker_gwbridge network: run scripts/env-up.sh first (swarm init creates it)"
    SUBNET="${cfg%% *}"
    GW="${cfg##* }"
    [[ "${GW}" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && "${SUBNET}" == */* ]] ||
        die "cannot read docker_gwbridge's subnet and gateway (got '${cfg}')"
    log "docker_gwbridge: subnet ${SUBNET}, host address ${GW}"
}

# "a.b.c.d/n" -> "a.b.c.d/m.m.m.m" (MySQL's netmask form for account hosts)
netmask_form() {
    local ip=${1%/*} bits=${1#*/} mask="" i n
    for i in 1 2 3 4; do
        if [ "${bits}" -ge 8 ]; then n=255; bits=$((bits - 8)); else n=$((256 - 2 ** (8 - bits))); bits=0; fi
        mask+="${n}"
        [ "$i" = 4 ] || mask+="."
    done
    printf '%s/%s\n' "${ip}" "${mask}"
}

# write_if_changed FILE CONTENT: returns 0 if the file changed
write_if_changed() {
    if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 1; fi
    printf '%s\n' "$2" >"$1"
    return 0
}

# --- credentials ------------------------------------------------------------------
PG_PASSWORD=""
MYSQL_PASSWORD=""
load_credentials() {
    mkdir -p "$(dirname "${CREDENTIALS}")"
    if [ ! -s "${CREDENTIALS}" ]; then
        # URL-special characters on purpose: the hub must cope with a
        # percent-encoded password (the tests encode it)
        (
            umask 077
            printf 'JHSWARM_PG_PASSWORD=%s\nJHSWARM_MYSQL_PASSWORD=%s\n' \
                "pg-$(openssl rand -hex 12)@%/:" "my-$(openssl rand -hex 12)" >"${CREDENTIALS}"
        )
        log "new database passwords in ${CREDENTIALS}"
    fi
    chmod 0600 "${CREDENTIALS}"
    PG_PASSWORD="$(sed -n 's/^JHSWARM_PG_PASSWORD=//p' "${CREDENTIALS}")"
    MYSQL_PASSWORD="$(sed -n 's/^JHSWARM_MYSQL_PASSWORD=//p' "${CREDENTIALS}")"
    [ -n "${PG_PASSWORD}" ] && [ -n "${MYSQL_PASSWORD}" ] || die "${CREDENTIALS} lacks a password"
}

# --- 3. PostgreSQL -----------------------------------------------------------------
pg_running() { pg_lsclusters -h "${PG_VERSION}" "${PG_CLUSTER}" 2>/dev/null | awk '{print $4}' | grep -q online; }

setup_postgres() {
    local conf="/etc/postgresql/${PG_VERSION}/${PG_CLUSTER}" changed=0 hba
    if ! pg_lsclusters -h "${PG_VERSION}" "${PG_CLUSTER}" 2>/dev/null | grep -q .; then
        log "creating cluster ${PG_VERSION}/${PG_CLUSTER}"
        pg_createcluster "${PG_VERSION}" "${PG_CLUSTER}" >/dev/null
    fi
    mkdir -p "${conf}/conf.d"
    if write_if_changed "${conf}/conf.d/jhswarm.conf" "${MARK}: the hub (a swarm service) connects over docker_gwbridge
listen_addresses = 'localhost,${GW}'
password_encryption = scram-sha-256"; then changed=1; fi
    hba="$(grep -v -F "${MARK}" "${conf}/pg_hba.conf" || true)"
    hba+=$'\n'"host    all    all    ${SUBNET}    scram-sha-256    ${MARK}"
    if write_if_changed "${conf}/pg_hba.conf" "${hba}"; then changed=1; fi
    if pg_running; then
        if [ "${changed}" = 1 ]; then
            log "configuration changed: restarting PostgreSQL"
            pg_ctlcluster "${PG_VERSION}" "${PG_CLUSTER}" restart
        fi
    else
        log "starting PostgreSQL ${PG_VERSION}/${PG_CLUSTER}"
        pg_ctlcluster "${PG_VERSION}" "${PG_CLUSTER}" start
    fi
    # it may have started while docker_gwbridge was missing (then it skips
    # that address): make sure it listens there now
    if ! pg_isready -q -h "${GW}" -t 5; then
        log "PostgreSQL does not answer on ${GW}: restarting"
        pg_ctlcluster "${PG_VERSION}" "${PG_CLUSTER}" restart
        pg_isready -q -h "${GW}" -t 20 || die "PostgreSQL does not answer on ${GW}:5432"
    fi
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v user="${DB_USER}" -v pw="${PG_PASSWORD}" \
        -v db="${DB_NAME}" -d postgres >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
    # (the host itself may reach ${GW} from another source address, so the
    # password is checked over 127.0.0.1, which Debian's pg_hba allows too)
    PGPASSWORD="${PG_PASSWORD}" psql -q -h 127.0.0.1 -U "${DB_USER}" -d "${DB_NAME}" -tAc 'SELECT 1' >/dev/null ||
        die "cannot log in to PostgreSQL as ${DB_USER}"
    log "PostgreSQL: ${DB_USER}@${GW}:5432/${DB_NAME} OK"
}

# --- 3. MariaDB --------------------------------------------------------------------
mariadb_running() { mysqladmin --protocol=socket ping >/dev/null 2>&1; }

setup_mariadb() {
    local changed=0 host
    host="$(netmask_form "${SUBNET}")"
    mkdir -p /etc/mysql/mariadb.conf.d
    if write_if_changed /etc/mysql/mariadb.conf.d/99-jhswarm.cnf "${MARK}: the hub (a swarm service) connects over docker_gwbridge
[mysqld]
bind-address = 127.0.0.1,${GW}"; then changed=1; fi
    if mariadb_running; then
        if [ "${changed}" = 1 ]; then
            log "configuration changed: restarting MariaDB"
            service mariadb restart >/dev/null
        fi
    else
        log "starting MariaDB"
        service mariadb start >/dev/null || { tail -n 30 /var/log/mysql/error.log 2>/dev/null >&2 || true; die "MariaDB did not start"; }
    fi
    local i
    for i in $(seq 1 30); do
        mariadb_running && break
        sleep 1
    done
    mariadb_running || die "MariaDB does not answer on its socket"
    if ! timeout 5 bash -c "</dev/tcp/${GW}/3306" 2>/dev/null; then
        log "MariaDB does not listen on ${GW}: restarting"
        service mariadb restart >/dev/null
        sleep 2
        timeout 5 bash -c "</dev/tcp/${GW}/3306" || die "MariaDB does not listen on ${GW}:3306"
    fi
    # root logs in through the socket (unix_socket auth); the password goes
    # on stdin, never on a command line
    # (the account for 127.0.0.1 is for checks from the host itself)
    local h
    for h in "${host}" 127.0.0.1; do
        mysql --protocol=socket -u root <<SQL
CREATE USER IF NOT EXISTS '${DB_USER}'@'${h}' IDENTIFIED BY '${MYSQL_PASSWORD}';
ALTER USER '${DB_USER}'@'${h}' IDENTIFIED BY '${MYSQL_PASSWORD}';
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'${h}';
SQL
    done
    MYSQL_PWD="${MYSQL_PASSWORD}" mysql --protocol=tcp -h 127.0.0.1 -u "${DB_USER}" -D "${DB_NAME}" -N -e 'SELECT 1' >/dev/null ||
        die "cannot log in to MariaDB as ${DB_USER}"
    log "MariaDB: ${DB_USER}@${GW}:3306/${DB_NAME} OK"
}

# --- 5. images (image_key, image_id, sha, standin_cached, docker_build_standin:
# scripts/lib.sh) ----------------------------------------------------------------

# build_cached TAG BASE DOCKERFILE_DIR [BUILD_ARG...]: classic build, skipped
# if the key (base image, files, build args) matches
build_cached() {
    local tag=$1 base=$2 dir=$3 key
    shift 3
    if ! docker image inspect "${base}" >/dev/null 2>&1; then
        [ "${JHSWARM_USE_REAL_IMAGES:-0}" = 1 ] || die "${base} missing: run scripts/env-up.sh first"
        docker pull -q "${base}" >/dev/null
    fi
    key="$({ image_id "${base}"; cat "${dir}"/*; printf '%s\n' "$@"; } | sha)"
    standin_cached "${tag}" "${key}" && return 0
    log "building ${tag} FROM ${base}"
    local args=() a
    for a in "$@"; do args+=(--build-arg "${a}"); done
    docker_build_standin "${tag}" "${key}" "${dir}/Dockerfile" "${dir}" --build-arg "BASE_IMAGE=${base}" "${args[@]}"
}

build_old_hubs() {
    local entry version packages base
    for entry in "${OLD_HUBS[@]}"; do
        version="${entry%%|*}" packages="${entry#*|}"
        if [ "${JHSWARM_USE_REAL_IMAGES:-0}" = 1 ]; then
            base="quay.io/jupyterhub/jupyterhub:${version}"
        else
            base="${PREVIOUS_HUB_TAG}"
        fi
        build_cached "jhswarm-test/jupyterhub-old:${version}" "${base}" "${STANDIN_DIR}/jupyterhub-old" \
            "VERSION=${version}" "PACKAGES=${packages}"
    done
}

build_images() {
    if [ "${JHSWARM_USE_REAL_IMAGES:-0}" = 1 ]; then
        log "JHSWARM_USE_REAL_IMAGES=1: no postgres stand-in (the tests use postgres:16)"
    else
        build_cached "${PG_IMAGE_TAG}" "${ROOTFS_TAG}" "${STANDIN_DIR}/postgres"
    fi
    build_old_hubs
}

step "packages (postgresql, mariadb-server)" install_packages
gateway
load_credentials
step "PostgreSQL ${PG_VERSION}" setup_postgres
step "MariaDB" setup_mariadb
step "database test images" build_images
log "databases ready in $((SECONDS - T_START))s (credentials: ${CREDENTIALS})"
