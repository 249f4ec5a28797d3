"""An image that does not exist, on the shared deployment (its pull policy is
`never` with the stand-in images): the hub refuses before it creates a
service, with a message naming the image, in the browser and in the API.
Once the image exists on the node, the same user's next start succeeds.

The `missing` suffix rule gives `erin-missing` the image MISSING_IMAGE.
(With JHSWARM_USE_REAL_IMAGES=1 the policy is `ifnotpresent`: the hub tries
to pull it, and the message says the pull failed; the image is named too.)
"""

import html
import re
import time

from . import swarm
from .conftest import MISSING_IMAGE, NOTEBOOK_IMAGE, PRODUCT_DEFAULT_NOTEBOOK, SETTINGS, observe, phase
from .hubclient import start_and_wait
from .swarm import log

NAME = "erin-missing"
SERVICE = "jupyter-erin-2dmissing"
POLICY = SETTINGS["SPAWNER_PULL_POLICY"]


def page_message(text):
    """The visible text of a hub page from its error message on."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
    shown = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())
    at = shown.find("could not start")
    return shown if at < 0 else shown[max(at - 60, 0):at + 300]


def assert_refused_cleanly(erin, message):
    assert "could not start" in message and MISSING_IMAGE in message, message
    if POLICY == "never":
        assert "SPAWNER_PULL_POLICY=never" in message, message
    else:
        assert "could not pull" in message, message
    assert SERVICE not in swarm.user_services()
    model = erin.user_model(NAME)
    assert model["servers"] == {} and model["pending"] is None, model


def test_missing_image_refused_before_a_service(hub, make_user):
    assert swarm.docker("image", "inspect", MISSING_IMAGE, check=False).returncode != 0, \
        f"{MISSING_IMAGE} exists on this node: remove it (docker image rm {MISSING_IMAGE})"
    with phase("missing image: user"):
        erin = make_user(NAME)

    with phase("missing image: browser: GET /hub/spawn until the answer"):
        t0 = time.monotonic()
        r = erin.get(f"/hub/spawn/{NAME}")
        took = time.monotonic() - t0
        shown = page_message(r.text)
        observe(f"{NAME} (missing image, pull policy {POLICY}): spawn page after {took:.1f}s: "
                f"HTTP {r.status_code} {r.url}: {shown!r}")
        assert r.status_code == 500, (r.status_code, r.url)
        assert MISSING_IMAGE in shown, shown
        events = erin.progress_events(NAME, timeout=30)
        observe(f"{NAME}: progress events: {events}")
        assert events and events[-1].get("failed"), events
        assert_refused_cleanly(erin, events[-1]["message"])

    with phase("missing image: API client: POST server"):
        t0 = time.monotonic()
        r = erin.start_server(NAME)
        took = time.monotonic() - t0
        observe(f"{NAME}: POST /hub/api/users/{NAME}/server after {took:.1f}s: "
                f"HTTP {r.status_code} {r.text[:300]}")
        # refused within the hub's slow_spawn_timeout: the POST's own answer
        assert r.status_code == 500, (r.status_code, r.text)
        assert_refused_cleanly(erin, r.json()["message"])
        # never created: dockerspawner logs every service it creates
        logs = swarm.hub_logs(5000)
        assert f"Created service {SERVICE}" not in logs, [
            line for line in logs.splitlines() if SERVICE in line]

    with phase("missing image: the image arrives, the next start succeeds"):
        swarm.docker("tag", NOTEBOOK_IMAGE or PRODUCT_DEFAULT_NOTEBOOK, MISSING_IMAGE)
        try:
            model, took = start_and_wait(erin, NAME)
            observe(f"{NAME}: after `docker tag ... {MISSING_IMAGE}`: ready in {took:.1f}s")
            spec = swarm.service_inspect(SERVICE)["Spec"]["TaskTemplate"]["ContainerSpec"]
            assert spec["Image"].split("@")[0] == MISSING_IMAGE, spec["Image"]
            erin.stop_server(NAME)
            swarm.wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")
        finally:
            swarm.docker("image", "rm", MISSING_IMAGE, check=False)
            log(f"untagged {MISSING_IMAGE}")
