# TEST-ONLY stand-in for a docker-stacks single-user image
# (jupyter/base-notebook): jupyterhub-singleuser + JupyterLab + the python3
# kernel, user jovyan (uid 1000, gid 100 "users"), `start-singleuser.sh` on
# PATH and USER 1000. Built by scripts/env-up.sh with the classic builder,
# FROM the jupyterhub stand-in (which already trusts the host CA for pip).
ARG BASE_IMAGE=jhswarm-standin/jupyterhub:5.5.4
FROM ${BASE_IMAGE}

ARG JUPYTERHUB_VERSION=5.5.4
ARG JUPYTERLAB_VERSION=4.3.8
ARG IPYKERNEL_VERSION=6.29.5

ENV NB_USER=jovyan \
    NB_UID=1000 \
    NB_GID=100 \
    SHELL=/bin/bash

RUN pip install --no-cache-dir \
        "jupyterhub==${JUPYTERHUB_VERSION}" \
        "jupyterlab==${JUPYTERLAB_VERSION}" \
        "ipykernel==${IPYKERNEL_VERSION}" \
 && python3 -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" \
 && useradd --create-home --home-dir /home/jovyan --shell /bin/bash \
        --uid 1000 --gid 100 jovyan \
 && mkdir -p /home/jovyan/work \
 && chown -R 1000:100 /home/jovyan

COPY start-singleuser.sh /usr/local/bin/start-singleuser.sh
RUN chmod 0755 /usr/local/bin/start-singleuser.sh

ENV HOME=/home/jovyan
WORKDIR /home/jovyan/work
EXPOSE 8888
USER 1000
# like docker-stacks: tini as PID 1 (signal forwarding, zombie reaping)
ENTRYPOINT ["tini", "-g", "--"]
CMD ["start-singleuser.sh"]
