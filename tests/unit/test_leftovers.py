"""find_leftovers: which of this hub's labelled services and TLS secrets a
starting hub may remove (the docker calls are in the e2e test
tests/e2e/test_12_hub_killed_mid_spawn.py)."""

from jupyterhub_swarm import SwarmUserSpawner, find_leftovers


def service(ident, name):
    return {"ID": ident, "Spec": {"Name": name}}


def secret(ident, name, server):
    return {"ID": ident, "Spec": {"Name": name, "Labels": {SwarmUserSpawner.SSL_LABEL: server}}}


def test_only_what_no_server_of_this_hub_owns():
    services = [service("s1", "jupyter-alice"), service("s2", "jupyter-bob")]
    secrets = [secret("k1", "jupyter-alice-1a2b3c-ssl-key", "jupyter-alice"),
               secret("k2", "jupyter-bob-4d5e6f-ssl-key", "jupyter-bob"),
               secret("k3", "jupyter-carol-0a0b0c-ssl-crt", "jupyter-carol")]
    gone_services, gone_secrets = find_leftovers(services, secrets, owned={"jupyter-alice"})
    assert gone_services == [("s2", "jupyter-bob")]
    assert gone_secrets == [("k2", "jupyter-bob-4d5e6f-ssl-key"),
                            ("k3", "jupyter-carol-0a0b0c-ssl-crt")]


def test_a_server_being_started_keeps_its_secrets_before_its_service_exists():
    # move_certs makes the secrets before the service: owned while pending
    secrets = [secret("k1", "jupyter-dan-aaaaaa-ssl-key", "jupyter-dan")]
    assert find_leftovers([], secrets, owned={"jupyter-dan"}) == ([], [])


def test_nothing_owned_nothing_found():
    assert find_leftovers([], [], owned=set()) == ([], [])
