"""The hub's log is written to stderr by a thread of its own: a stderr that
is slow to take a line (a pipe the container engine reads late) does not
hold the thread that logs, which in the hub is the event loop. Lines keep
their order, and nothing queued is lost when the hub exits."""

import logging
import logging.config
import threading

from conftest import load_config
from jupyterhub_swarm import QueuedStreamHandler


class SlowStream:
    """A stream whose writes wait until `opened` is set, noting who wrote."""

    def __init__(self):
        self.opened = threading.Event()
        self.text, self.writers = [], set()

    def write(self, text):
        self.opened.wait()
        self.writers.add(threading.current_thread().name)
        self.text.append(text)

    def flush(self):
        pass


def logger(handler):
    log = logging.getLogger(f"test-log-writer-{id(handler)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def test_logging_does_not_wait_for_a_slow_stderr_and_keeps_the_order():
    stream = SlowStream()
    handler = QueuedStreamHandler(stream)
    log = logger(handler)
    caller = threading.Thread(target=lambda: [log.info("line %d", i) for i in range(500)])
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "logging waited for the stream"
    assert stream.text == []  # none written yet: the stream is still closed
    stream.opened.set()
    handler.flush()
    assert "".join(stream.text) == "".join(f"line {i}\n" for i in range(500))
    assert stream.writers == {"log-writer"}, stream.writers
    handler.close()


def test_closing_writes_what_is_queued_first():
    stream = SlowStream()
    handler = QueuedStreamHandler(stream)
    log = logger(handler)
    for i in range(3):
        log.warning("queued %d", i)
    stream.opened.set()
    handler.close()  # as logging.shutdown does at exit
    assert stream.text == ["queued 0\n", "queued 1\n", "queued 2\n"]
    assert not handler.writer.is_alive()


def test_the_hubs_console_handler_is_the_queued_one():
    """The class the configuration names, as dictConfig resolves it for the
    hub's `console` handler (traitlets' logging_config)."""
    console = load_config().JupyterHub.logging_config["handlers"]["console"]
    resolved = logging.config.BaseConfigurator({}).resolve(console["class"])
    assert resolved is QueuedStreamHandler
    assert set(console) == {"class"}  # traitlets' stream, level and formatter stay
