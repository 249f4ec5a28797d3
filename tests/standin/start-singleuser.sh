#!/bin/bash
# TEST-ONLY, minimal imitation of docker-stacks' start-singleuser.sh:
#  * as root: create + `chown -R NB_UID:NB_GID` every path in $CHOWN_EXTRA
#    (comma-separated), the home dir too if CHOWN_HOME=yes, then drop to the
#    notebook user and exec jupyterhub-singleuser;
#  * as any other user: exec jupyterhub-singleuser directly.
# $NOTEBOOK_ARGS (word-split) is passed before "$@", as docker-stacks does.
set -euo pipefail

NB_USER="${NB_USER:-jovyan}"
NB_UID="${NB_UID:-1000}"
NB_GID="${NB_GID:-100}"
NB_HOME="/home/${NB_USER}"

# shellcheck disable=SC2206  # word splitting of NOTEBOOK_ARGS is intended
extra_args=(${NOTEBOOK_ARGS:-})

if [ "$(id -u)" = 0 ]; then
    if [ -n "${CHOWN_EXTRA:-}" ]; then
        IFS=',' read -r -a chown_paths <<<"${CHOWN_EXTRA}"
        for p in "${chown_paths[@]}"; do
            [ -n "${p}" ] || continue
            echo "start-singleuser.sh: chown -R ${NB_UID}:${NB_GID} ${p}" >&2
            mkdir -p -- "${p}"
            chown -R "${NB_UID}:${NB_GID}" -- "${p}"
        done
    fi
    if [ "${CHOWN_HOME:-no}" = yes ] || [ "${CHOWN_HOME:-no}" = 1 ]; then
        mkdir -p -- "${NB_HOME}"
        chown -R "${NB_UID}:${NB_GID}" -- "${NB_HOME}"
    fi
    export HOME="${NB_HOME}" USER="${NB_USER}" LOGNAME="${NB_USER}"
    if getent passwd "${NB_UID}" >/dev/null; then
        groups_opt=(--init-groups)
    else
        groups_opt=(--clear-groups)
    fi
    echo "start-singleuser.sh: running jupyterhub-singleuser as uid ${NB_UID} gid ${NB_GID}" >&2
    exec setpriv --reuid="${NB_UID}" --regid="${NB_GID}" "${groups_opt[@]}" \
        jupyterhub-singleuser "${extra_args[@]}" "$@"
fi

exec jupyterhub-singleuser "${extra_args[@]}" "$@"
