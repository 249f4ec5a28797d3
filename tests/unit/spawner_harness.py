"""Build a user's spawner exactly as the hub does (real ORM, real User), and
record the service spec it sends, for unit tests of what depends on the user.
The real-swarm tests in tests/e2e check the same specs against dockerd."""

import asyncio

from docker.errors import NotFound
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


class RecordingDocker:
    """Stands in for the docker client calls of one spawn."""

    def __init__(self, network):
        self.network = network
        self.created = None

    async def __call__(self, method, *args, **kwargs):
        if method in ("inspect_service", "inspect_image"):
            if method == "inspect_service" and self.created is None:
                raise NotFound("no such service", response=_Response(404))
            return {"ID": "svc123", "Id": "img"}
        if method == "create_service":
            self.created = kwargs
            return {"ID": "svc123"}
        if method == "tasks":
            return [{
                "CreatedAt": "1",
                "Status": {"State": "running"},
                "NetworksAttachments": [{
                    "Network": {"Spec": {"Name": self.network}},
                    "Addresses": ["10.0.9.7/24"],
                }],
            }]
        raise AssertionError(f"unexpected docker call {method}")


def make_spawner(cfg, username, api_token="token-for-tests", groups=(), db=None, server=""):
    """The spawner of `username`'s server `server` (default: the default
    one), as the hub builds it
    (also used by bench/time_to_error.py), the user a member of the
    JupyterHub `groups`. With `db` (an ORM session), the user is found
    there or added to it, as a restarted hub finds it."""
    db = db or orm.new_session_factory("sqlite://")()
    orm_user = db.query(orm.User).filter_by(name=username).one_or_none()
    if orm_user is None:
        orm_user = orm.User(name=username)
        db.add(orm_user)
    for name in groups:
        group = orm.Group.find(db, name) or orm.Group(name=name)
        if group not in orm_user.groups:
            orm_user.groups.append(group)
    db.commit()
    settings = {
        "spawner_class": cfg.JupyterHub.spawner_class,
        "config": cfg,
        "hub": Hub(ip="jupyterhub", port=8001, base_url="/hub/"),
        "base_url": "/",
        "domain": "",
    }
    user = User(orm_user, settings, db=db)
    if server and server not in user.orm_spawners:
        user._new_orm_spawner(server, server)  # as the hub does for a new named server
    spawner = user.spawners[server]
    spawner.api_token = api_token
    return spawner


def spawn_spec(cfg, username, groups=(), user_options=None, server=""):
    """(create_service kwargs, (ip, port)) of one start() of `username`'s
    server `server`, with the `user_options` a form or the API gave."""
    spawner = make_spawner(cfg, username, groups=groups, server=server)
    if user_options is not None:
        spawner.user_options = user_options
    fake = RecordingDocker(spawner.network_name)
    spawner.docker = fake
    address = asyncio.run(spawner.start())
    return fake.created, address, spawner
