# An extra configuration file: JupyterHub settings this image has no variable
# for. docker-compose.extra-config.yml mounts it into the hub as a docker
# config, at /srv/jupyterhub/jupyterhub_config.d/extra.py (HUB_EXTRA_CONFIG_DIR).
#
# It runs after the image's jupyterhub_config.py, with the same `c` (and
# get_config()): what it sets overrides the variables, and nothing checks it.
# An error in it stops the hub with this file's name, the line and the error
# (docker service logs jhub_jupyterhub). Check it before deploying:
#   docker run --rm --env-file my.env \
#     -v "$PWD/jupyterhub_config.d:/srv/jupyterhub/jupyterhub_config.d:ro" \
#     jupyterhub-swarm:6.1.1-1 jupyterhub-swarm-check
#
# Examples (uncomment and edit):
#
# A message above the login form (HTML), or on every page with "announcement":
# c.JupyterHub.template_vars = {"announcement_login": "Maintenance Saturday 18:00-20:00"}
#
# A trait of the spawner, the authenticator or the hub:
# c.SwarmUserSpawner.http_timeout = 60
# c.JupyterHub.shutdown_on_logout = True
