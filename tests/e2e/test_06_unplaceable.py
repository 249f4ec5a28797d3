"""A server swarm cannot place (a suffix rule's label that no node has) fails
quickly with swarm's reason, and its service is not left behind. Once the
node gets the label, the same user's next start succeeds.

Recorded (printed) along the way: what a browser user sees (the spawn page,
its progress stream, the page after a reload) and what an API client sees.
"""

import time

from . import swarm
from .conftest import GPU_LABEL, observe, phase
from .hubclient import start_and_wait
from .spawnwatch import start_and_watch
from .swarm import log, wait_for

NAME = "dave-nowhere"
SERVICE = "jupyter-dave-2dnowhere"
REASON = "scheduling constraints not satisfied"
# the shared deployment's `nowhere` rule
NOWHERE_LABEL = ("calculation_type", "e2e-no-such-node")


def page_message(text):
    """The main text of a hub error/not-running page, squeezed."""
    import html
    import re

    main = re.search(r"<h1>(.*?)</h1>(.*?)<a id=\"start\"", text, re.S)
    body = main.group(0) if main else text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())[:400]


def assert_no_service_left():
    wait_for(lambda: SERVICE not in swarm.user_services(), 30, f"{SERVICE} removed")
    assert swarm.service_inspect(SERVICE) is None


def test_unplaceable_spawn_fails_with_reason(hub, make_user):
    with phase("unplaceable: user"):
        dave = make_user(NAME)

    with phase("unplaceable: browser: spawn page until failure"):
        t0 = time.monotonic()
        r = dave.get(f"/hub/spawn/{NAME}")
        log(f"GET /hub/spawn/{NAME} -> {r.url} HTTP {r.status_code}")
        assert r.url.endswith(f"/hub/spawn-pending/{NAME}"), r.url
        events = dave.progress_events(NAME, timeout=120)
        took = time.monotonic() - t0
        observe(f"{NAME} (unplaceable): failed after {took:.1f}s; progress events: {events}")
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "could not start" in message and REASON in message, message
        # the constraint no node matches is named
        assert "node.labels.calculation_type==e2e-no-such-node" in message, message

        reloaded = dave.get(f"/hub/spawn-pending/{NAME}")
        observe(
            f"{NAME}: spawn-pending page after the failure: HTTP {reloaded.status_code}: "
            f"{page_message(reloaded.text)!r} (reason shown: {REASON in reloaded.text})"
        )
        assert reloaded.status_code == 500 and "Spawn failed" in reloaded.text

    with phase("unplaceable: no service left, user model"):
        assert_no_service_left()
        model = dave.user_model(NAME)
        assert model["servers"] == {} and model["pending"] is None, model

    with phase("unplaceable: API client: POST server until failure"):
        # the stream is read from the first moment, as the spawn page does
        r, events, took = start_and_watch(dave, NAME, timeout=120)
        # a failure within the hub's slow_spawn_timeout (10s) is the POST's
        # answer; a slower one comes through the progress stream
        observe(f"{NAME}: POST /hub/api/users/{NAME}/server: HTTP {r.status_code} {r.text[:300]}")
        assert r.status_code in (202, 500), (r.status_code, r.text)
        observe(f"{NAME} (unplaceable): failed after {took:.1f}s; progress events: {events}")
        assert events and events[-1].get("failed") and REASON in events[-1]["message"], events
        # while pending, the stream showed swarm's own words
        waiting = [e["message"] for e in events if e["message"].startswith("waiting for a node")]
        assert any(REASON in m for m in waiting), events
        assert_no_service_left()
        assert dave.user_model(NAME)["pending"] is None

    with phase("unplaceable: the node gets the label, the next start succeeds"):
        try:
            swarm.label_node(*NOWHERE_LABEL)
            model, took = start_and_wait(dave, NAME)
            observe(f"{NAME}: after `docker node update --label-add "
                    f"{'='.join(NOWHERE_LABEL)}`: ready in {took:.1f}s")
            assert model["servers"][""]["ready"], model
            dave.stop_server(NAME)
            assert_no_service_left()
        finally:
            swarm.label_node(*GPU_LABEL)  # the label the other rules need back
