#!/usr/bin/env bash
# The version a release tag publishes, or a refusal:
#
#   bash scripts/release-version.sh TAG [DOCKERFILE]
#
# TAG is a git tag name such as v6.1.1-1 (the release workflow passes
# $GITHUB_REF_NAME). The image's one version is the Dockerfile's
# org.opencontainers.image.version label, <JupyterHub's version>-<build>
# (tests/unit/test_version.py); a release tag is "v" and exactly that. On a
# match this prints the version (6.1.1-1) on stdout and exits 0; otherwise it
# says why on stderr and exits 1, so that a tag which would publish an image
# whose label disagrees with its tag (a tag pushed before the Dockerfile's
# bump, or a typo) publishes nothing.
# DOCKERFILE defaults to the repository's Dockerfile.
set -Eeuo pipefail

die() { printf 'release-version: %s\n' "$*" >&2; exit 1; }

{ [ $# -ge 1 ] && [ $# -le 2 ]; } || die "usage: release-version.sh TAG [DOCKERFILE]"
tag=$1
dockerfile=${2:-"$(dirname "${BASH_SOURCE[0]}")/../Dockerfile"}
[ -r "${dockerfile}" ] || die "cannot read ${dockerfile}"

labels="$(sed -n 's/.*org\.opencontainers\.image\.version="\([^"]*\)".*/\1/p' "${dockerfile}")"
[ -n "${labels}" ] || die "${dockerfile} has no org.opencontainers.image.version label"
[ "$(printf '%s\n' "${labels}" | wc -l)" -eq 1 ] ||
    die "${dockerfile} has more than one org.opencontainers.image.version label: $(printf "%s\n" "${labels}" | tr "\n" " ")"
version=${labels}
[[ "${version}" =~ ^[0-9]+\.[0-9]+\.[0-9]+-[1-9][0-9]*$ ]] ||
    die "the Dockerfile's version '${version}' is not <jupyterhub version>-<build> (e.g. 6.1.1-1)"

[ "${tag}" = "v${version}" ] ||
    die "tag '${tag}' does not match the Dockerfile's version label ${version}: tag the release v${version}, or bump org.opencontainers.image.version first"
printf '%s\n' "${version}"
