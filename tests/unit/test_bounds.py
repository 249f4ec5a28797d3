"""Input that swarm, dockerd or bcrypt would refuse later stops the hub at
configuration time, with the variable, the value and the accepted forms.

What each refuses, from their sources: swarmkit manager/constraint
(constraints), manager/controlapi validateResources (NanoCPUs >= 1e6,
MemoryBytes >= 4 MiB), moby's linuxMinMemory (6 MiB at container creation),
int64 resources, distribution/reference (image references), swarmkit's
PlatformFilter (platforms as written), bcrypt (72 bytes)."""

import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from traitlets.config import Config

from conftest import MINIMAL_ENV, config_error, environment, load_config
from jupyterhub_config import Env, configure
from jupyterhub_swarm import ConfigError

INT64_MAX = 2**63 - 1
MIB = 1024**2
EXAMPLE_DIGEST = "sha256:" + "0123456789abcdef" * 4

BAD = [
    # (variables, the variable named, text of the accepted forms)
    ({"SPAWNER_CONSTRAINTS": "zone==a==b"}, "SPAWNER_CONSTRAINTS", "key==value"),
    ({"SPAWNER_CONSTRAINTS": "zone==ünï"}, "SPAWNER_CONSTRAINTS", "ASCII"),
    ({"SPAWNER_CONSTRAINTS": "zone/x==a"}, "SPAWNER_CONSTRAINTS", "key==value"),
    ({"SPAWNER_CONSTRAINTS": "node.labels.==a"}, "SPAWNER_CONSTRAINTS", "node.labels.<label>"),
    ({"SPAWNER_CONSTRAINTS": "node.rol==manager"}, "SPAWNER_CONSTRAINTS", "node.role"),
    ({"SPAWNER_CONSTRAINTS": "node.ip==somewhere"}, "SPAWNER_CONSTRAINTS", "CIDR"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "torch:zone==a<b->img"}, "SPAWNER_CONSTRAINT_IMAGES",
     "constraint"),
    ({"SPAWNER_MEM_LIMIT": "1M", "SPAWNER_MEM_GUARANTEE": "0"}, "SPAWNER_MEM_LIMIT", "6M"),
    ({"SPAWNER_MEM_LIMIT": "4M", "SPAWNER_MEM_GUARANTEE": "0"}, "SPAWNER_MEM_LIMIT", "6M"),
    ({"SPAWNER_MEM_GUARANTEE": "1k"}, "SPAWNER_MEM_GUARANTEE", "6M"),
    ({"SPAWNER_MEM_LIMIT": "9000000T"}, "SPAWNER_MEM_LIMIT", str(INT64_MAX)),
    ({"SPAWNER_CPU_LIMIT": "0.0005", "SPAWNER_CPU_GUARANTEE": "0"}, "SPAWNER_CPU_LIMIT", "0.001"),
    ({"SPAWNER_CPU_GUARANTEE": "0.0001"}, "SPAWNER_CPU_GUARANTEE", "0.001"),
    ({"SPAWNER_CPU_LIMIT": "1e300", "SPAWNER_CPU_GUARANTEE": "0"}, "SPAWNER_CPU_LIMIT", "0.001"),
    ({"SPAWNER_CPU_LIMIT": "1e10"}, "SPAWNER_CPU_LIMIT", "9223372036"),
    ({"SPAWNER_USE_GPUS": str(INT64_MAX + 1)}, "SPAWNER_USE_GPUS", "positive integer"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "t->img", "SPAWNER_CONSTRAINT_WITH_GPUS": f"t->{2**64}"},
     "SPAWNER_CONSTRAINT_WITH_GPUS", "positive integer"),
    ({"SPAWNER_NOTEBOOK_IMAGE": "My/Torch:2"}, "SPAWNER_NOTEBOOK_IMAGE", "lowercase"),
    ({"SPAWNER_NOTEBOOK_IMAGE": "img:"}, "SPAWNER_NOTEBOOK_IMAGE", "image reference"),
    ({"SPAWNER_NOTEBOOK_IMAGE": "jupyter/base notebook"}, "SPAWNER_NOTEBOOK_IMAGE",
     "image reference"),
    ({"SPAWNER_NOTEBOOK_IMAGE": "img@sha256:abc"}, "SPAWNER_NOTEBOOK_IMAGE", "64 hex digits"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "torch->My/Torch:2"}, "SPAWNER_CONSTRAINT_IMAGES",
     "lowercase"),
    ({"SPAWNER_CONSTRAINT_IMAGES": "base->img;torch:zone==gpu->img:"},
     "SPAWNER_CONSTRAINT_IMAGES", "->image"),
    ({"SPAWNER_PLATFORM": "AMD64:Linux"}, "SPAWNER_PLATFORM", "amd64:linux"),
    ({"SPAWNER_PLATFORM": "amd64:linux,ARM64:linux"}, "SPAWNER_PLATFORM", "arm64:linux"),
    ({"SPAWNER_PLATFORM": "linux:amd64"}, "SPAWNER_PLATFORM", "amd64:linux"),
    ({"SPAWNER_START_TIMEOUT": "0"}, "SPAWNER_START_TIMEOUT", ">= 1"),
    ({"SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME": "shared-volume"},
     "SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", "{username}"),
    ({"SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME": "vol-{username:.0}"},
     "SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", "{username}"),
    ({"AUTH_MINIMUM_PASSWORD_LENGTH": "73"}, "AUTH_MINIMUM_PASSWORD_LENGTH", "to 72"),
    ({"AUTH_USERNAME_PATTERN": ".{1,32}", "AUTH_ADMIN_USER": "ad\x07min"}, "AUTH_ADMIN_USER",
     "control"),
]


@pytest.mark.parametrize("env,variable,accepted", BAD, ids=[b[1] + "=" + repr(b[0]) for b in BAD])
def test_value_swarm_would_refuse_is_refused_now(env, variable, accepted):
    message = config_error(**env)
    assert f"{variable}={env[variable]!r} is invalid" in message, message
    assert accepted in message, message


def test_the_default_and_documented_forms_still_load():
    sp = load_config(
        SPAWNER_NOTEBOOK_IMAGE="localhost:5000/team/nb_x__y-1.z:v1.0-rc_2@" + EXAMPLE_DIGEST,
        SPAWNER_CONSTRAINTS="node.role==manager, zone != a b,node.ip==10.0.0.0/8,"
                            "engine.labels.os==linux,node.hostname==[a-b]+c*(n|b)/",
        SPAWNER_PLATFORM="amd64:linux,arm64:linux,x86_64:linux",
        SPAWNER_MEM_LIMIT="6M", SPAWNER_MEM_GUARANTEE="6M",
        SPAWNER_CPU_LIMIT="0.001", SPAWNER_CPU_GUARANTEE="0.001",
        SPAWNER_USE_GPUS=str(INT64_MAX), SPAWNER_START_TIMEOUT="1",
        SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME="home-{username}",
        SPAWNER_CONSTRAINT_IMAGES="torch:zone==gpu->[::1]:5000/torch:2;b->Reg.Example/x",
    ).SwarmUserSpawner
    assert sp.image.startswith("localhost:5000/team/nb_x__y-1.z:v1.0-rc_2@sha256:")
    assert sp.base_constraints[1] == "node.labels.zone!=a b"
    assert (sp.mem_limit, sp.cpu_limit, sp.start_timeout) == (6 * MIB, 0.001, 1)
    assert sp.default_gpu.count == INT64_MAX


# -- the admin password: bcrypt hashes at most 72 bytes ------------------------


def test_admin_password_over_72_bytes_stops_the_hub_without_showing_it():
    password = "é" * 40  # 40 characters, 80 bytes in UTF-8
    message = config_error(AUTH_ADMIN_PASSWORD=password)
    assert "AUTH_ADMIN_PASSWORD=" in message and "72 bytes" in message, message
    assert "80" in message, message  # its length, never the value
    assert password not in message and "éé" not in message


def test_admin_password_file_over_72_bytes_stops_the_hub(tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("x" * 73 + "\n")
    message = config_error(AUTH_ADMIN_PASSWORD_FILE=str(secret))
    assert "AUTH_ADMIN_PASSWORD" in message and "72 bytes" in message and "73" in message
    assert "x" * 73 not in message
    load_config(AUTH_ADMIN_PASSWORD="x" * 72)  # 72 is fine


# -- property tests of the validators, through the configuration ---------------


def outcome(**variables):
    """None if the configuration loads, else the ConfigError."""
    try:
        with environment({}):
            configure(Config(), Env(dict(MINIMAL_ENV, **variables)))
    except ConfigError as e:
        return e
    return None


def assert_refused(variable, value, **variables):
    error = outcome(**{variable: value}, **variables)
    assert error is not None, f"{variable}={value!r} was accepted"
    assert error.variable == variable, error.message
    assert f"{variable}={value!r}" in error.message, error.message
    return error


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# swarmkit's alphabets, written out here from constraint.go
KEY_START = string.ascii_letters + "_"
KEY_REST = string.ascii_letters + string.digits + "-_."
VALUE_CHARS = string.ascii_letters + string.digits + ":-_ .*()?+[]\\^$|/"
label_keys = st.builds(lambda a, b: a + b, st.sampled_from(KEY_START),
                       st.text(KEY_REST, min_size=1, max_size=12))
values = st.text(VALUE_CHARS, min_size=1, max_size=16).filter(lambda v: v.strip())


@FAST
@given(key=label_keys, op=st.sampled_from(["==", "!="]), value=values,
       bad=st.characters(blacklist_characters=VALUE_CHARS + ",", blacklist_categories=("Cs",)),
       at=st.integers(0, 16), spoil=st.booleans())
def test_constraints_are_kept_exactly_when_swarm_parses_them(key, op, value, bad, at, spoil):
    assume(not key.startswith(("node.", "engine.")))
    if not spoil:
        with environment({}):
            c = configure(Config(), Env(dict(MINIMAL_ENV, SPAWNER_CONSTRAINTS=f"{key}{op}{value}")))
        assert c.SwarmUserSpawner.base_constraints == (f"node.labels.{key}{op}{value.strip()}",)
        return
    assume(not bad.isspace())  # stripped at the ends, as by swarm
    value = (value[:at] + bad + value[at:]).strip()  # the variable is read trimmed
    assert_refused("SPAWNER_CONSTRAINTS", f"{key}{op}{value}")


@FAST
@given(size=st.one_of(st.integers(1, 6 * MIB - 1), st.integers(INT64_MAX + 1, 2**80)))
def test_memory_outside_what_swarm_runs_is_refused(size):
    error = assert_refused("SPAWNER_MEM_LIMIT", str(size), SPAWNER_MEM_GUARANTEE="0")
    assert "6M" in error.message and str(INT64_MAX) in error.message


@FAST
@given(size=st.integers(6 * MIB, INT64_MAX))
def test_memory_swarm_runs_is_kept(size):
    with environment({}):
        c = configure(Config(), Env(dict(MINIMAL_ENV, SPAWNER_MEM_LIMIT=str(size),
                                         SPAWNER_MEM_GUARANTEE="0")))
    assert c.SwarmUserSpawner.mem_limit == size


@FAST
@given(cpus=st.floats(min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_cpus_are_kept_exactly_when_swarm_takes_their_nanocpus(cpus):
    nanos = cpus * 1e9  # what dockerspawner sends
    error = outcome(SPAWNER_CPU_LIMIT=repr(cpus), SPAWNER_CPU_GUARANTEE="0")
    fits = nanos < 2**63 and int(nanos) >= 10**6
    assert (error is None) == fits, (cpus, error and error.message)
    if error:
        assert error.variable == "SPAWNER_CPU_LIMIT" and "0.001" in error.message


@FAST
@given(count=st.integers(INT64_MAX + 1, 2**200))
def test_gpu_counts_swarm_cannot_hold_are_refused(count):
    assert_refused("SPAWNER_USE_GPUS", str(count))


# the grammar of distribution/reference, written out here (regexp.go)
component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+){0,2}", fullmatch=True)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
domains = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]\.[a-z]{2,4}(?::[0-9]{1,5})?",
                        fullmatch=True)


@st.composite
def references(draw):
    path = "/".join(draw(st.lists(component, min_size=1, max_size=3)))
    ref = (draw(domains) + "/" + path) if draw(st.booleans()) else path
    if draw(st.booleans()):
        ref += ":" + draw(tags)
    if draw(st.booleans()):
        ref += "@sha256:" + draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    return ref


@st.composite
def broken_references(draw):
    """A reference made invalid in one of the ways operators do."""
    path = draw(st.lists(component, min_size=1, max_size=3))
    domain = draw(st.one_of(st.just(""), domains.map(lambda d: d + "/")))
    tag = draw(st.one_of(st.just(""), tags.map(lambda t: ":" + t)))
    how = draw(st.sampled_from(["upper", "space", "empty tag", "control", "short digest"]))
    if how == "upper":  # the last path component is never a domain
        assume(any(c.isalpha() for c in path[-1]))
        path[-1] = path[-1].upper()
    ref = domain + "/".join(path) + tag
    if how == "space":
        at = draw(st.integers(0, len(ref)))
        return ref[:at] + " " + ref[at:]
    if how == "empty tag":
        return domain + "/".join(path) + ":"
    if how == "control":
        return ref + draw(st.sampled_from(["\x00", "\x07", "\x7f", "\u200b"]))
    if how == "short digest":
        return ref + "@sha256:" + draw(st.from_regex(r"[0-9a-f]{1,63}", fullmatch=True))
    return ref


@FAST
@given(image=references(), broken=broken_references())
def test_images_are_kept_exactly_when_they_are_references(image, broken):
    assume(not re.fullmatch(r"[a-f0-9]{64}", image) and broken.strip() == broken)
    with environment({}):
        c = configure(Config(), Env(dict(MINIMAL_ENV, SPAWNER_NOTEBOOK_IMAGE=image,
                                         SPAWNER_CONSTRAINT_IMAGES=f"gpu->{image}")))
    assert c.SwarmUserSpawner.image == image
    assert c.SwarmUserSpawner.suffix_rules["gpu"].image == image
    for variable, value in (("SPAWNER_NOTEBOOK_IMAGE", broken),
                            ("SPAWNER_CONSTRAINT_IMAGES", f"gpu->{broken}")):
        assert_refused(variable, value)


@FAST
@given(arch=st.sampled_from(["amd64", "arm64", "x86_64", "s390x", "ppc64le"]),
       os_name=st.sampled_from(["linux", "windows"]), data=st.data())
def test_platforms_in_another_case_are_refused_with_the_lowercase_form(arch, os_name, data):
    mask = data.draw(st.lists(st.booleans(), min_size=len(arch + os_name),
                              max_size=len(arch + os_name)))
    word = "".join(c.upper() if up else c for c, up in zip(arch + os_name, mask))
    written = f"{word[:len(arch)]}:{word[len(arch):]}"
    assume(written != written.lower())
    error = assert_refused("SPAWNER_PLATFORM", written)
    assert f"{arch}:{os_name}" in error.message


@FAST
@given(template=st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}", fullmatch=True))
def test_volume_names_without_the_user_are_refused(template):
    assert_refused("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", template)


@FAST
@given(middle=st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
       wide=st.sampled_from(["é", "€", "😀"]))
def test_admin_passwords_over_72_bytes_are_refused_by_length(middle, wide):
    password = "x" + middle + wide * 40 + "x"  # more than 72 bytes, trimmed as given
    error = outcome(AUTH_ADMIN_PASSWORD=password)
    assert error is not None and error.variable == "AUTH_ADMIN_PASSWORD"
    assert "AUTH_ADMIN_PASSWORD=<hidden>" in error.message and "72 bytes" in error.message
    assert f"{len(password.encode())})" in error.message
    assert password not in error.message and wide * 2 not in error.message
