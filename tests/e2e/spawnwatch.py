"""Start a server through the API and read its progress stream from the
first moment, as the spawn page does: so a spawn that fails within two
seconds still shows the events it emitted while pending."""

import threading
import time

from .swarm import wait_for


def start_and_watch(client, name, timeout=150):
    """POST /hub/api/users/<name>/server and read the spawn's progress stream.

    Returns (POST response, progress events, seconds from the POST until the
    stream's last event). The stream is opened as soon as the hub reports the
    spawn pending (or the POST has returned, for a spawn that ended at once),
    never before: a user's previous failed spawn would answer instead.
    """
    answer = {}

    def post():
        answer["response"] = client.start_server(name)

    poster = threading.Thread(target=post, daemon=True)
    t0 = time.monotonic()
    poster.start()
    wait_for(
        lambda: "response" in answer or client.user_model(name).get("pending") == "spawn",
        30, f"{name}'s spawn to be pending", interval=0.05,
    )
    events = client.progress_events(name, timeout=timeout)
    took = time.monotonic() - t0
    poster.join(timeout)
    assert "response" in answer, f"POST for {name} did not return"
    return answer["response"], events, took
