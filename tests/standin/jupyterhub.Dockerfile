# TEST-ONLY stand-in for quay.io/jupyterhub/jupyterhub:5.5.4 (no container
# registry is reachable on the test machines). Built by scripts/env-up.sh with
# the classic builder (DOCKER_BUILDKIT=0), FROM the debootstrapped Debian
# bookworm rootfs image that env-up.sh imports (python3 + venv on PATH at
# /opt/venv, nodejs, npm). Also used as the stand-in for the
# configurable-http-proxy image.
ARG ROOTFS_IMAGE=jhswarm-standin/rootfs:bookworm-py
FROM ${ROOTFS_IMAGE}

ARG JUPYTERHUB_VERSION=5.5.4
ARG CHP_VERSION=4.6.3

# Test-only: trust the build host's extra CA certificates (egress goes through
# a TLS-inspecting proxy), so pip/npm work here and in any later
# `docker build` FROM this image (e.g. the project's Dockerfile running
# `pip install -r requirements.txt`). env-up.sh puts the certs in host-ca/.
COPY host-ca/ /usr/local/share/ca-certificates/jhswarm-host/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180

RUN pip install --no-cache-dir "jupyterhub==${JUPYTERHUB_VERSION}" \
 && jupyterhub --version

RUN npm install -g --no-fund --no-audit --no-update-notifier \
        "configurable-http-proxy@${CHP_VERSION}" \
 && npm cache clean --force \
 && configurable-http-proxy --version

# the official proxy image's entrypoint path, for use as the proxy stand-in
COPY chp-docker-entrypoint /srv/configurable-http-proxy/chp-docker-entrypoint
RUN chmod 0755 /srv/configurable-http-proxy/chp-docker-entrypoint \
 && mkdir -p /srv/jupyterhub
WORKDIR /srv/jupyterhub
EXPOSE 8000
CMD ["jupyterhub"]
