"""User servers of every jupyterhub-singleuser release in use, with the 6.1.1
hub: 4.0 (the spec's default image, jupyter/base-notebook:notebook-6.5.4, has
it), 5.5 (images made for JupyterHub 5) and 6.1 (current). Each gets its image
through a suffix rule of the shared deployment (`-su40`, `-su55`, `-su61`),
starts, is ready through the proxy with the browser's OAuth login, serves
JupyterLab and its contents API, reports activity to the hub, and stops.
"""

import pytest

from . import swarm
from .conftest import SINGLEUSER_IMAGES, observe, phase
from .hubclient import start_and_wait
from .swarm import wait_for


@pytest.mark.parametrize("version", sorted(SINGLEUSER_IMAGES))
def test_server_of_each_singleuser_release(hub, admin, make_user, version):
    name = f"release-su{version.replace('.', '')}"
    image = SINGLEUSER_IMAGES[version]
    service = f"jupyter-{name.replace('-', '-2d')}"  # escaped as dockerspawner does
    user = make_user(name)
    with phase(f"singleuser {version}: start {name} on {image}"):
        _, took = start_and_wait(user)
        spec = swarm.service_inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert spec["Image"].split("@")[0] == image, spec["Image"]
        out = swarm.docker("exec", swarm.container_of(service), "jupyterhub-singleuser",
                           "--version").stdout.split()
        assert out and out[-1].startswith(version + "."), out
    with phase(f"singleuser {version}: JupyterLab and its API through the proxy"):
        lab = user.open_server()
        assert "jupyterlab" in lab.text.lower(), lab.text[:300]
        user.put_file("release.txt", f"written on singleuser {version}")
        assert user.get_file("release.txt") == f"written on singleuser {version}"
        # the server tells the hub it is in use
        wait_for(lambda: admin.user_model(name)["servers"][""].get("last_activity"), 60,
                 f"{name}'s activity reported to the hub")
    with phase(f"singleuser {version}: stop"):
        user.stop_server(name)
        assert service not in swarm.user_services()
    observe(f"jupyterhub-singleuser {out[-1]} ({image}) with the 6.1.1 hub: ready in "
            f"{took:.1f}s, JupyterLab and its API through the proxy, stopped")
