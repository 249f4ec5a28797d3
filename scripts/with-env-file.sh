#!/usr/bin/env bash
# with-env-file.sh ENV_FILE COMMAND [ARG...]
#
# Runs COMMAND with the variables of ENV_FILE added to the environment,
# ENV_FILE read the way `docker run --env-file` reads it, so that one file
# serves both the stack and the configuration check:
#
#   scripts/with-env-file.sh my.env docker stack deploy -c docker-compose.swarm.yml jhub
#   docker run --rm --env-file my.env jupyterhub-swarm:6.1.1-1 jupyterhub-swarm-check
#
# The file is never evaluated by a shell (`set -a; . ./my.env` would run
# `->` as a redirection and `A:1;B:2` as two commands). Line by line, as
# docker does: a UTF-8 byte order mark at the start and a CR at a line's
# end are dropped, leading whitespace is dropped, blank lines and lines
# starting with # are skipped; the rest splits at the first `=` into a
# name (no whitespace) and a value taken byte for byte: quotes, `$`,
# spaces, trailing whitespace and all. A line with a name and no `=` keeps
# that variable from the calling environment, as docker does. Unlike
# docker, names must be shell variable names ([A-Za-z_][A-Za-z0-9_]*),
# the only ones a compose file can use. Values are never printed.
set -Eeuo pipefail
# shellcheck disable=SC2034  # lib.sh reads it
LOG_TAG=with-env-file
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 2 ] || die "usage: $0 ENV_FILE COMMAND [ARG...]"
env_file=$1
shift
{ [ -f "${env_file}" ] && [ -r "${env_file}" ]; } || die "${env_file}: not a readable file"
# docker refuses a file that is not UTF-8: so does this
if command -v iconv >/dev/null && ! iconv -f UTF-8 -t UTF-8 "${env_file}" >/dev/null 2>&1; then
    die "${env_file}: not valid UTF-8 (docker --env-file refuses it too)"
fi

lineno=0
while IFS= read -r line || [ -n "${line}" ]; do
    lineno=$((lineno + 1))
    if [ "${lineno}" -eq 1 ]; then
        line=${line#$'\xef\xbb\xbf'}
    fi
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    if [ -z "${line}" ] || [ "${line:0:1}" = "#" ]; then
        continue
    fi
    name=${line%%=*}
    case ${name} in
        # the line itself is not shown: it may be a value on a line of its own
        *[[:space:]]*) die "${env_file}:${lineno}: whitespace in the variable name (or no '=')" ;;
        "") die "${env_file}:${lineno}: no variable name before '='" ;;
    esac
    [[ ${name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
        die "${env_file}:${lineno}: not a variable name before '=' (letters, digits, _)"
    if [ "${name}" != "${line}" ]; then
        export "${name}=${line#*=}"
    fi
done <"${env_file}"

exec "$@"
