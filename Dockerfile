# The hub image: the official JupyterHub image plus the swarm spawner, the
# native authenticator, the database drivers and jupyterhub_config.py.
# Build with another base (a mirror, a local stand-in) via --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=quay.io/jupyterhub/jupyterhub:5.5.4
FROM ${BASE_IMAGE}

COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY jupyterhub_config.py /srv/jupyterhub/jupyterhub_config.py
# The configuration check: docker run --rm --env-file my.env <image> jupyterhub-swarm-check [user ...]
RUN printf '#!/bin/sh\nexec python3 /srv/jupyterhub/jupyterhub_config.py "$@"\n' > /usr/local/bin/jupyterhub-swarm-check \
 && chmod 755 /usr/local/bin/jupyterhub-swarm-check
WORKDIR /srv/jupyterhub

# /data holds the cookie secret and the SQLite database: mount a volume there.
VOLUME ["/data"]
EXPOSE 8000

# Healthy when the hub answers on its own port (HUB_HUB_PORT, 8001 by default);
# with internal TLS (HUB_INTERNAL_SSL_PATH) the hub asks every client for a
# certificate, so the check shows the hub's own.
HEALTHCHECK --interval=5s --timeout=4s --start-period=120s --retries=3 \
  CMD python3 -c "import os,ssl,urllib.request as u; d=os.environ.get('HUB_INTERNAL_SSL_PATH'); c=ssl._create_unverified_context(); d and c.load_cert_chain(d+'/hub-internal/hub-internal.crt', d+'/hub-internal/hub-internal.key'); u.urlopen(f\"{'https' if d else 'http'}://127.0.0.1:{os.environ.get('HUB_HUB_PORT') or 8001}/hub/health\", timeout=4, context=c)"

CMD ["jupyterhub", "-f", "/srv/jupyterhub/jupyterhub_config.py"]
