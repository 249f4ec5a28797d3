# The hub image: the official JupyterHub image plus the swarm spawner, the
# native authenticator, the database drivers, jupyterhub_config.py and the
# jupyterhub_swarm.py module beside it.
# Build with another base (a mirror, a local stand-in) via --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=quay.io/jupyterhub/jupyterhub:6.1.1
FROM ${BASE_IMAGE}

# HAProxy for the stack's docker-api service, which filters the hub's calls
# to the engine (docker-api-proxy.cfg)
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && haproxy -v

COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The settings, and beside them the machinery they import (spawner, proxy,
# authenticator, checks): jupyterhub_config.py puts its own folder on sys.path.
COPY jupyterhub_config.py jupyterhub_swarm.py /srv/jupyterhub/
# the docker-api service's configuration (the same image, another entrypoint)
COPY docker-api-proxy.cfg /srv/jupyterhub/
RUN haproxy -c -f /srv/jupyterhub/docker-api-proxy.cfg
# pages of the hub that replace NativeAuthenticator's (the approval page)
COPY templates/ /srv/jupyterhub/templates/
# The operator's own settings (HUB_EXTRA_CONFIG_DIR): mount *.py files here,
# as docker configs (docker-compose.extra-config.yml) or a volume; empty in the image.
RUN mkdir -p /srv/jupyterhub/jupyterhub_config.d
# The configuration check: docker run --rm --env-file my.env <image> jupyterhub-swarm-check [user ...]
RUN printf '#!/bin/sh\nexec python3 /srv/jupyterhub/jupyterhub_config.py "$@"\n' > /usr/local/bin/jupyterhub-swarm-check \
 && chmod 755 /usr/local/bin/jupyterhub-swarm-check
WORKDIR /srv/jupyterhub

# /data holds the cookie secret and the SQLite database: mount a volume there.
VOLUME ["/data"]
EXPOSE 8000

# Healthy when the hub answers on its own port (HUB_HUB_PORT, 8001 by
# default). Swarm routes to a (re)started hub only once it is healthy, and
# docker runs the first check one interval after the start: every second,
# with a check cheaper than python3 (jupyterhub-swarm-health).
# 15 failures in a row (15 s or more) mark the hub unhealthy.
COPY jupyterhub-swarm-health /usr/local/bin/jupyterhub-swarm-health
HEALTHCHECK --interval=1s --timeout=4s --start-period=120s --retries=15 \
  CMD ["bash", "/usr/local/bin/jupyterhub-swarm-health"]

CMD ["jupyterhub", "-f", "/srv/jupyterhub/jupyterhub_config.py"]

# This image's version: <JupyterHub's version>-<this project's revision on
# it>. Build it under this tag (docs/setup.md: Deploy; docs/administration.md: Upgrading this image); the
# stack file's default JUPYTERHUB_IMAGE names the same tag, so deploying a
# newer release changes the services' image and swarm replaces the hub.
# (Last, so that a new version rebuilds one layer.)
LABEL org.opencontainers.image.title="jupyterhub-swarm" \
      org.opencontainers.image.version="6.1.1-1" \
      org.opencontainers.image.description="JupyterHub on Docker Swarm, configured by environment variables"
