"""The machinery behind jupyterhub_config.py: what the settings are applied by.

jupyterhub_config.py reads the environment and sets the traits defined here;
this module reads no environment variable. It holds, in this order:

- the values a spawn is built from (frozen dataclasses) and the pure
  functions that apply them to one user: image and placement, the volume
  mount, service names;
- SwarmUserSpawner: one swarm service per user server, with swarm's reasons
  when it cannot run; every setting a trait (``c.SwarmUserSpawner.<trait>``);
- SwarmProxy: the internal TLS files for an external proxy;
- SwarmNativeAuthenticator and its sign-up handler;
- the runner of the operator's own configuration files;
- the database check and the configuration check command.

The deployment's defaults live in jupyterhub_config.py's tables, the one
place they are written down; the traits' own defaults here are neutral (no
volume, no GPU, no constraint).
"""

import asyncio
import contextvars
import hashlib
import ipaddress
import logging
import os
import queue
import re
import secrets
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

import docker as docker_py
from aiohttp import ThreadedResolver
from dockerspawner import DockerSpawner, SwarmSpawner
from docker.errors import APIError, NotFound
from docker.types import (DriverConfig, Mount, NetworkAttachmentConfig, RestartPolicy,
                          SecretReference)
from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from jupyterhub.handlers.metrics import MetricsHandler
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import metrics_authentication
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import TEMPLATE_DIR as NATIVE_TEMPLATES  # noqa: F401
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import (ChangePasswordAdminHandler, ChangePasswordHandler,
                                          DiscardHandler, SignUpHandler,
                                          ToggleAuthorizationHandler, admin_users_scope)
from nativeauthenticator.orm import UserInfo
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from tornado import web
from traitlets import Bool, Dict, Instance, Integer, Tuple, Unicode, default


class ConfigError(SystemExit):
    """A bad setting. Raised before the hub serves anything.

    It derives from SystemExit on purpose: the hub then exits with status 1
    and prints only this message (no traceback), naming the variable.
    """

    def __init__(self, name, value, accepted, secret=False, problem=None):
        # secret: True hides the value, a function shows a masked form of it
        if callable(secret):
            shown = repr(secret(value))
        else:
            shown = "<hidden>" if secret else repr(value)
        self.variable = name
        self.message = problem or f"{name}={shown} is invalid: expected {accepted}"
        super().__init__(f"Configuration error: {self.message}")


def split_list(text, sep):
    """Split on sep, strip items, drop empty ones (trailing separators)."""
    return [item.strip() for item in text.split(sep) if item.strip()]


# Between the head and the hash of a shortened name. In a name dockerspawner
# escaped, '-' is always followed by two hex digits ('-' itself is "-2d"), so
# "--" never occurs there: it sits where only a shortened name has it.
SHORTENED_MARK = "--"


def shorten(name, limit, digits=10):
    """`name` if it fits in `limit` characters, else its head, "--" and a
    hash of the whole name, exactly `limit` characters: distinct names stay
    distinct, and no name that fits reads like a shortened one."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:digits]
    return f"{name[: limit - digits - len(SHORTENED_MARK)]}{SHORTENED_MARK}{digest}"


# Between the user's and a named server's escaped names: "-s" never occurs
# in an escaped name either ('s' is no hex digit), so the user's part ends
# at the first "-s-", and no default server's name has one.
NAMED_SERVER_MARK = "-s-"


def service_name(prefix, escaped_username, limit=63, escaped_server=""):
    """Docker service names are DNS labels: at most 63 characters. A long
    name keeps 16 hex digits (64 bits) of its hash: finding another name
    with the same hash is out of reach, and sign-up refuses one anyway
    (SwarmNativeAuthenticator.server_name_taken). A named server's service
    is `<prefix>-<user>-s-<server>` (JupyterHub.allow_named_servers)."""
    name = f"{prefix}-{escaped_username}"
    if escaped_server:
        name += NAMED_SERVER_MARK + escaped_server
    return shorten(name, limit, digits=16)


def escape_username(username):
    """The user's name as dockerspawner puts it in docker names."""
    return DockerSpawner._escape(username)


# --------------------------------------------------------------------------
# Secrets in URLs: masked wherever a URL is shown
# --------------------------------------------------------------------------


def split_credentials(url):
    """(scheme://, user info, rest) of a URL with user info, else None. The
    user info ends at the LAST '@': a password pasted without percent-encoding
    may hold '@', '/', '?' or '#', and masking must hide all of it."""
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail or head.lower().startswith("sqlite"):
        return None
    userinfo, _, rest = tail.rpartition("@")
    return head + sep, userinfo, rest


def mask_url(url):
    """The URL with its password replaced, safe for logs and errors."""
    url = re.sub(r"(?i)([?&](?:password|passwd)=)[^&#]*", r"\1***", url)  # query forms
    parts = split_credentials(url)
    if parts is None or ":" not in parts[1]:
        return url
    prefix, userinfo, rest = parts
    return f"{prefix}{userinfo.split(':', 1)[0]}:***@{rest}"


# --------------------------------------------------------------------------
# What a user gets: image, placement, GPUs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """A GPU request: `count` discrete NVIDIA-GPU generic resources, or
    `visible` devices exposed through NVIDIA_VISIBLE_DEVICES with no
    reservation, or neither."""

    count: int = 0
    visible: str = ""

    @property
    def wanted(self):
        return bool(self.count or self.visible)


@dataclass(frozen=True)
class SuffixRule:
    image: str
    constraints: tuple = ()
    gpu: Gpu = None  # None: SPAWNER_USE_GPUS applies


@dataclass(frozen=True)
class Placement:
    constraints: tuple = ()
    preferences: tuple = ()
    platforms: tuple = ()


@dataclass(frozen=True)
class UserPlan:
    image: str
    constraints: tuple
    gpu: Gpu


def user_suffix(username):
    """The part after the last '-', or None: 'alice-torch' -> 'torch'."""
    stem, sep, suffix = username.rpartition("-")
    if not sep or not stem or not suffix:
        return None
    return suffix.lower()


def plan_for_user(username, image, constraints, gpu, suffix_rules, profile=None):
    """Image, constraints and GPUs for one user; the inputs are not changed.
    A suffix rule of the user's name wins; else the chosen Profile's rule
    applies the same way (its constraints added, its GPUs if it has any)."""
    rule = suffix_rules.get(user_suffix(username) or "")
    if rule is None and profile is not None:
        rule = profile.rule
    return rule_plan(image, constraints, gpu, rule)


def rule_plan(image, constraints, gpu, rule):
    """The plan of a server that `rule` (a SuffixRule, or None: the plain
    settings) applies to."""
    if rule is None:
        return UserPlan(image, tuple(constraints), gpu)
    extra = tuple(c for c in rule.constraints if c not in constraints)
    return UserPlan(
        rule.image,
        tuple(constraints) + extra,
        gpu if rule.gpu is None else rule.gpu,
    )


# --------------------------------------------------------------------------
# Profiles: the environment a user chooses at spawn time
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One choice of SPAWNER_PROFILES: a rule like a suffix rule's, the
    words the spawn page shows, and the JupyterHub groups that may choose
    it (empty: everybody)."""

    key: str
    rule: SuffixRule
    name: str = ""
    description: str = ""
    groups: tuple = ()

    @property
    def title(self):
        return self.name or self.key


class ProfileRefused(web.HTTPError):
    """A profile this user may not choose: 400 before anything is created.
    jupyterhub_message carries the words to the API's error and the page."""

    def __init__(self, reason):
        super().__init__(400, "%s", reason)
        self.jupyterhub_message = reason


def profiles_for(username, groups, profiles, suffix_rules):
    """The profiles `username` (in JupyterHub groups `groups`) may choose,
    in their order; none for a user whose name has a suffix rule."""
    if (user_suffix(username) or "") in suffix_rules:
        return ()
    groups = set(groups)
    return tuple(p for p in profiles if not p.groups or groups & set(p.groups))


def choose_profile(allowed, default_key, user_options):
    """The Profile `user_options` asks for among `allowed`, the default (or
    the first allowed) when it asks for none; None when nothing may be
    chosen and nothing is asked. ValueError names what may be chosen."""
    asked = (user_options or {}).get("profile")
    if isinstance(asked, list) and len(asked) == 1:  # a form's field, passed through
        asked = asked[0]
    if asked is None or asked == "":
        if not allowed:
            return None
        return next((p for p in allowed if p.key == default_key), allowed[0])
    keys = ", ".join(p.key for p in allowed)
    if not isinstance(asked, str):
        raise ValueError(f"the profile must be a string, one of: {keys}" if allowed else
                         "the profile must be a string; you have no profiles to choose from")
    found = next((p for p in allowed if p.key == asked.strip().lower()), None)
    if found is None:
        if not allowed:
            raise ValueError(f"unknown profile {asked!r}: you have no profiles to choose "
                             "from (your server's environment is fixed)")
        raise ValueError(f"unknown profile {asked!r}: you may choose {keys}")
    return found


def gpu_words(gpu):
    if gpu.count:
        return f"{gpu.count} GPU{'s' if gpu.count > 1 else ''} reserved"
    if gpu.visible:
        return f"GPUs {gpu.visible} visible, none reserved"
    return "no GPU"


def where_words(plan, placement):
    """Where a server of `plan` runs, in plain words."""
    parts = []
    if plan.constraints:
        parts.append("on nodes where " + " and ".join(plan.constraints))
    if placement.platforms:
        parts.append("on " + " or ".join(f"{o}/{a}" for a, o in placement.platforms))
    if placement.preferences:
        parts.append("spread over " + ", ".join(d for _, d in placement.preferences))
    return ", ".join(parts) if parts else "on any node"


def profile_form(profiles, chosen, plan_of, placement):
    """The spawn page's radio buttons, one per profile, `chosen` checked;
    every text escaped. plan_of(profile) -> its UserPlan."""
    from html import escape

    items = []
    for p in profiles:
        plan = plan_of(p)
        checked = " checked" if p.key == chosen else ""
        ident = escape(f"profile-{p.key}", quote=True)
        description = (f'<div class="profile-description">{escape(p.description)}</div>'
                       if p.description else "")
        items.append(
            f'<div class="radio profile-option">\n'
            f'  <label for="{ident}">\n'
            f'    <input type="radio" name="profile" id="{ident}" '
            f'value="{escape(p.key, quote=True)}"{checked}>\n'
            f'    <strong>{escape(p.title)}</strong>\n'
            f'    {description}\n'
            f'    <div class="profile-details">Image: <code>{escape(plan.image)}</code>; '
            f'{escape(gpu_words(plan.gpu))}; runs {escape(where_words(plan, placement))}'
            + (f"; for group {escape(', '.join(p.groups))}" if p.groups else "")
            + "</div>\n  </label>\n</div>")
    return ('<fieldset class="profiles">\n<legend>Choose your environment</legend>\n'
            + "\n".join(items) + "\n</fieldset>")


# --------------------------------------------------------------------------
# Storage: one swarm volume mount per user
# --------------------------------------------------------------------------

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Storage:
    """Where a user's saved files live (SPAWNER_PERSISTENCE_*)."""

    type: str  # local, nfs3, nfs4 or cifs
    source_name: str  # the volume's name, may hold {username}
    target: str  # where it is mounted in the user's server
    mkdir_root: str  # NFS/CIFS: the share's mount point in the hub
    owner: tuple  # (uid, gid) of the directories the hub makes
    host: str = ""
    device: str = ""
    opts: str = ""
    # NFS/CIFS: the path on the server mounted at mkdir_root (NFS: the
    # exported path; CIFS: /share[/path]); "": the device up to its first
    # segment with a placeholder (share_root)
    root: str = ""


def _fill(template, username):
    try:
        return template.format(username=username)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"bad placeholder in {template!r}: {e}") from None


def split_device(device, username):
    """Split a remote path into (share root, per-user relative path).

    The root is everything before the first segment with a placeholder; with
    no placeholder every user still gets a directory of their own below it.
    """
    segments = [s for s in device.split("/") if s]
    for i, segment in enumerate(segments):
        if "{" in segment:
            rel = [_fill(s, username) for s in segments[i:]]
            return "/" + "/".join(segments[:i]), "/".join(rel)
    return "/" + "/".join(segments), username


def storage_mount(storage, username):
    """The swarm Mount arguments for one user (username already escaped)."""
    source = _fill(storage.source_name, username)
    if not _VOLUME_NAME.fullmatch(source) or len(source) > 255:
        raise ValueError(f"volume name {source!r} is not valid for docker")
    mount = {"target": storage.target, "source": source, "type": "volume"}
    if storage.type == "local":
        return mount
    if storage.type in ("nfs3", "nfs4"):
        root, rel = split_device(storage.device.lstrip(":"), username)
        device = ":" + (root.rstrip("/") + "/" + rel)
        fstype = "nfs"
    else:
        device = storage.device
        if not device.startswith("//"):
            device = f"//{storage.host}/{device.lstrip(':/')}"
        host_part, _, path = device[2:].partition("/")
        root, rel = split_device(path, username)
        device = f"//{host_part}{root.rstrip('/')}/{rel}"
        fstype = "cifs"
    options = {"type": fstype, "o": f"addr={storage.host}{storage.opts}", "device": device}
    mount["driver_config"] = {"name": "local", "options": options}
    return mount


def server_path(storage):
    """The device's path on the server: NFS without the ':', CIFS without
    //host (the share name first)."""
    device = storage.device
    if storage.type == "cifs" and device.startswith("//"):
        device = device[2:].partition("/")[2]
    return "/" + device.lstrip(":").lstrip("/")


def share_root(storage):
    """The path on the server that the hub mounts at mkdir_root: storage.root,
    else the device up to its first segment with {username}."""
    if storage.root:
        return "/" + storage.root.strip("/")
    return split_device(server_path(storage), "x")[0]


def below_root(root, path):
    """path's part below root, both absolute server paths compared segment by
    segment; None when root is not root or a directory above it."""
    r = [s for s in root.split("/") if s]
    p = [s for s in path.split("/") if s]
    if p[:len(r)] != r:
        return None
    return "/".join(p[len(r):])


def user_directory(storage, username):
    """Where the hub creates the user's directory on the mounted share, or
    None for local volumes. Never outside storage.mkdir_root."""
    if storage.type == "local":
        return None
    device_root, rel = split_device(server_path(storage), username)
    above = below_root(share_root(storage), device_root)
    if above is None:
        raise ValueError(f"share root {share_root(storage)!r} is not {device_root!r} "
                         "or a directory above it")
    root = os.path.realpath(storage.mkdir_root)
    path = os.path.realpath(os.path.join(root, above, rel))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ValueError(f"user directory {rel!r} escapes {root}")
    return path


# --------------------------------------------------------------------------
# Swarm's tasks: what a starting server is doing, decided without docker
# --------------------------------------------------------------------------

# Task states in which swarm will not make this task run any more.
FINAL_STATES = {"failed", "rejected", "shutdown", "orphaned", "complete", "remove"}
# Scheduler reasons that no amount of waiting fixes (swarmkit's filters).
HOPELESS_PENDING = ("scheduling constraints not satisfied", "unsupported platform")
_NO_SUITABLE_NODE = re.compile(r"no suitable node \((.*)\)")
# Swarm's filters need a moment to see a new node's resources: an
# unplaceable task fails only after this many seconds.
HOPELESS_AFTER = 2
# Swarm's allocator gives a new task its network addresses within
# milliseconds; a task still "new" after this many seconds got none, and
# swarm says why only in the manager's log ("could not find an available
# IP": the user network is full).
ADDRESS_WAIT = 10


def pending_is_hopeless(err):
    """True when every reason in swarm's "no suitable node (a; b)" is one that
    waiting does not fix. Swarm counts each node under one reason, so
    "scheduling constraints not satisfied on 2 nodes; insufficient resources
    on 1 node" can still be placed once the third node frees resources."""
    match = _NO_SUITABLE_NODE.search(err)
    reasons = split_list(match.group(1), ";") if match else [err]
    return bool(reasons) and all(any(h in r for h in HOPELESS_PENDING) for r in reasons)


def task_reason(status):
    """Swarm's words for a task's state: its error, else its message."""
    return status.get("Err") or status.get("Message") or ""


def given_up(task):
    """True for a task swarm still calls running but wants shut down: what
    it shows for the task of a node that went down (the node cannot report
    the end; swarm gives up on the task and, with restart condition none,
    starts no other). dockerspawner's poll takes such a task when no task
    of the service is meant to run."""
    if not task:
        return False
    return (task.get("Status", {}).get("State") in ("running", "starting")
            and task.get("DesiredState") in ("shutdown", "remove"))


def last_ended(tasks):
    """The status of the last of `tasks` in a final state, or None."""
    ended = [t.get("Status", {}) for t in tasks]
    ended = [s for s in ended if s.get("State") in FINAL_STATES]
    return ended[-1] if ended else None


@dataclass(frozen=True)
class StartState:
    """What a new service's tasks say after `waited` seconds.

    kind: "running"; "ended" (swarm ended a task: the reason is on it);
    "unplaceable" (no node can ever take it); "no_resources" (waited longer
    than the resource wait for free GPUs/CPUs/memory); "no_address" (still
    "new" after ADDRESS_WAIT: swarm could not allocate its addresses);
    "waiting" (state and reason of the newest task); "no_task" (swarm made
    none yet)."""

    kind: str
    state: str = ""
    reason: str = ""


def judge_start(tasks, waited, resource_wait, address_wait=ADDRESS_WAIT):
    tasks = sorted(tasks, key=lambda t: t.get("CreatedAt", ""))
    statuses = [t.get("Status", {}) for t in tasks]
    if any(s.get("State") == "running" for s in statuses):
        return StartState("running")
    # Swarm replaces a task that ended at once (restart policy): the newest
    # task is then a fresh one, "ready" or "new", and the reason is on the
    # older one. The service is new, so any ended task is this spawn's.
    ended = last_ended(tasks)
    if ended:
        return StartState("ended", ended["State"], task_reason(ended))
    if not statuses:
        return StartState("no_task")
    status = statuses[-1]
    state, err = status.get("State", ""), status.get("Err")
    if state == "pending" and err:
        if pending_is_hopeless(err) and waited > HOPELESS_AFTER:
            return StartState("unplaceable", state, err)
        if waited > resource_wait:
            return StartState("no_resources", state, err)
    if state == "new" and waited > address_wait:
        return StartState("no_address", state, task_reason(status))
    return StartState("waiting", state, task_reason(status))


def subnet_room(subnets):
    """Addresses swarm can hand out in the overlay subnets ("10.0.1.0/24"):
    each loses its network, broadcast and gateway addresses."""
    room = 0
    for subnet in subnets:
        network = ipaddress.ip_network(subnet, strict=False)
        room += max(network.num_addresses - 3, 0)
    return room


def addresses_held(tasks, services, network_id):
    """How many addresses on the network `network_id` the tasks and the
    services' virtual IPs (the engine's objects) hold."""
    held = 0
    for task in tasks:
        for attachment in task.get("NetworksAttachments") or []:
            if attachment.get("Network", {}).get("ID") == network_id:
                held += len(attachment.get("Addresses") or [])
    for service in services:
        vips = (service.get("Endpoint") or {}).get("VirtualIPs") or []
        held += sum(1 for vip in vips if vip.get("NetworkID") == network_id)
    return held


def no_address_reason(network, subnets, room, held, nodes, waited):
    """The spawn page's words for a task swarm gave no address."""
    where = f"the network {network} ({', '.join(subnets) or 'subnet unknown'})"
    used = f"tasks hold {held} of its {room} addresses and each of the {nodes} nodes one"
    if held + nodes >= room:
        return (f"swarm found no free address for it on {where} in {waited:.0f}s: the "
                f"network is full ({used}). Stop servers nobody uses, or give the user "
                "network a larger subnet (docker-compose.network.yml, SPAWNER_NETWORK_SUBNET)")
    return (f"swarm gave it no address on {where} in {waited:.0f}s ({used}); "
            "the swarm manager's log says why")


# --------------------------------------------------------------------------
# Metrics of spawns, in JupyterHub's own registry (/hub/metrics)
# --------------------------------------------------------------------------

# Why a spawn failed: a fixed set, the `reason` label of
# jupyterhub_swarm_spawn_failures_total (docs/administration.md, "Metrics").
FAILURE_KINDS = (
    "unplaceable",   # no node satisfies the placement constraints
    "platform",      # no node has the platform (SPAWNER_PLATFORM)
    "no_resources",  # no node had the CPUs/memory/GPUs free within SPAWNER_RESOURCE_WAIT
    "no_address",    # the user network had no free address (a full subnet)
    "mount",         # swarm could not mount the user's volume
    "image",         # the image could not be found or pulled
    "exited",        # the server's container ended while starting
    "timeout",       # SPAWNER_START_TIMEOUT passed
    "other",         # anything else
)
_MOUNT_WORDS = re.compile(r"mount|no such device", re.I)
_IMAGE_WORDS = re.compile(r"no such image|pull access denied|manifest unknown|"
                          r"repository does not exist|image .*not found", re.I)


def unplaceable_kind(err):
    """"platform" when swarm's only hopeless reason is the platform, else
    "unplaceable" (constraints, or constraints and platform)."""
    if "unsupported platform" in err and "constraints not satisfied" not in err:
        return "platform"
    return "unplaceable"


def ended_kind(err):
    """The kind of a failure whose task swarm ended, from swarm's words."""
    if _MOUNT_WORDS.search(err):
        return "mount"
    if _IMAGE_WORDS.search(err):
        return "image"
    return "exited"


SPAWN_FAILURES = Counter(
    "jupyterhub_swarm_spawn_failures_total",
    "User server spawns that failed, by reason kind: " + ", ".join(FAILURE_KINDS),
    ["reason"])
for _kind in FAILURE_KINDS:  # every kind from 0, so that increase() sees the first one
    SPAWN_FAILURES.labels(_kind)
NODE_WAIT = Histogram(
    "jupyterhub_swarm_node_wait_seconds",
    "Seconds from the creation of a user server's service until swarm gave its task a node",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, float("inf")))


# --------------------------------------------------------------------------
# The spawner
# --------------------------------------------------------------------------


def split_image(image):
    """(name, tag, digest) of an image reference; tag and digest may be ""
    (a registry's port is part of the name: host:5000/x has no tag)."""
    name, _, digest = image.partition("@")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def familiar_name(name):
    """The name as docker shows it: Docker Hub's docker.io/ and library/
    dropped (RepoDigests are spelled so)."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    return name


def pinned_image(image, repo_digests):
    """`image` pinned to the registry digest the hub's node holds for it
    (name:tag@sha256:..., from the image's RepoDigests), so that the server's
    node runs exactly that image: swarm pulls a digest only where the node
    lacks it, and a :tag before every start. Unchanged when it already has
    a digest, or the node's copy never came from a registry (built here)."""
    name, tag, digest = split_image(image)
    if digest:
        return image
    for held in repo_digests:
        held_name, _, held_digest = held.partition("@")
        if held_digest and familiar_name(held_name) == familiar_name(name):
            return f"{name}:{tag or 'latest'}@{held_digest}"
    return image


async def pin_to_held(inspect_image, image):
    """pinned_image of the copy of `image` that `inspect_image` (an async
    docker call on the hub's node) finds; `image` as it is when there is
    none."""
    try:
        held = (await inspect_image(image)).get("RepoDigests") or ()
    except NotFound:
        return image
    return pinned_image(image, held)


def engine_unreachable(error):
    """Did a docker call fail to connect at all (refused, or no such name:
    the stack's docker-api restarting)? Then nothing reached the engine and
    the call can be made again, a create too. A connection lost mid-call
    is not this: the engine may have done it."""
    from urllib3.exceptions import NewConnectionError  # NameResolutionError is one

    seen, stack = set(), [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NewConnectionError):
            return True
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        stack.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
    return False


class SpawnFailed(web.HTTPError):
    """A user server that swarm could not run, with swarm's reason.

    An HTTPError with jupyterhub_message set: JupyterHub then shows the
    reason on the spawn page, in the API's error and in its log."""

    def __init__(self, reason, kind="other"):
        super().__init__(500, "%s", reason)
        self.jupyterhub_message = reason
        self.kind = kind if kind in FAILURE_KINDS else "other"


class SwarmUserSpawner(SwarmSpawner):
    """SwarmSpawner with real volume mounts, per-user rules and task-address
    routing. The traits are set once from the configuration and never
    changed; each spawn derives its own values from them."""

    storage = Instance(Storage, allow_none=True, config=True, help="""
        Where each user's saved files live: one swarm volume mount per user
        (type=volume, never a bind mount). None: no persistent volume.
        (SPAWNER_PERSISTENCE_*)""")
    base_constraints = Tuple(config=True, help="""
        Swarm placement constraints of every user server, as swarm spells
        them (node.labels.x==y). A suffix rule adds its own.
        (SPAWNER_CONSTRAINTS)""")
    placement = Instance(Placement, args=(), config=True, help="""
        Placement preferences and platforms of every user server; its
        constraints are unused (see base_constraints).
        (SPAWNER_PREFERENCE, SPAWNER_PLATFORM)""")
    default_gpu = Instance(Gpu, args=(), config=True, help="""
        GPUs of a user server whose name matches no suffix rule with GPUs.
        (SPAWNER_USE_GPUS)""")
    suffix_rules = Dict(config=True, help="""
        {suffix: SuffixRule}: the image, extra constraints and GPUs of users
        whose name ends in -<suffix>.
        (SPAWNER_CONSTRAINT_IMAGES, SPAWNER_CONSTRAINT_WITH_GPUS)""")
    profiles = Tuple(config=True, help="""
        Profile instances, in the order the spawn page lists them: what a
        user whose name has no suffix rule may choose at spawn time (form or
        API: {"profile": "<key>"}). Empty: no choice, no form.
        (SPAWNER_PROFILES, SPAWNER_PROFILE_*)""")
    default_profile = Unicode("", config=True, help="""
        The key of the profile a user gets without choosing one (when that
        user may choose it; else their first). (SPAWNER_PROFILE_DEFAULT)""")
    resource_wait = Integer(0, config=True, help="""
        Seconds a spawn waits while swarm finds no node with enough free
        resources before it fails with swarm's reason. (SPAWNER_RESOURCE_WAIT)""")
    chown_local_volume = Bool(True, config=True, help="""
        With a local volume, start the server as root with CHOWN_EXTRA set to
        the volume's mount point: a new named volume is root-owned, and
        docker-stacks images give CHOWN_EXTRA to the notebook user before
        dropping to it.""")
    hub_name = Unicode("", config=True, help="""
        The hub's own swarm service name (the stack file sets it from
        {{.Service.Name}}): every service and secret this hub makes carries
        it in the label jupyterhub-swarm.hub, and at start the hub removes
        those it no longer owns (left by a hub that died mid-spawn). Empty:
        no label, no removal. (HUB_SERVICE_NAME)""")

    prepull = Bool(True, config=True, help="""
        Keep the images of the servers (the default image, every suffix
        rule's and profile's) on every node that may run them: a global
        service running `true` once per node, per image, at hub start and
        when a node joins (Prepuller).
        Off with pull_policy never or skip. (SPAWNER_PREPULL)""")
    prepull_interval = Integer(60, config=True, help="""
        Seconds between the pre-puller's looks at the swarm's nodes.""")

    # Per-spawn state, made anew by start() (and create_certs with TLS).
    engine_wait = Integer(60, config=True, help="""
        Seconds a docker call keeps trying while it cannot connect to the
        engine's API at all (the stack's docker-api service restarting, as
        in an upgrade that replaces it and the hub together) before it
        fails. Without it, a hub starting in that moment finds every
        server's poll failing and forgets the running servers.""")

    _plan = None  # this spawn's UserPlan
    _last_profile = ""  # the key of the profile the last start used (state)
    _events = ()  # progress events of this spawn
    _ssl_name = None  # this spawn's network alias, named in its certificate
    _ssl_secrets = ()  # SecretReferences of its certificates

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # start() sets self.image to this spawn's image, which dockerspawner
        # reads; each spawn starts again from the configured one
        self._base_image = self.image

    # dockerspawner makes every docker call of every user in ONE thread: a
    # slow image pull held up every other user's spawn, stop and poll for as
    # long as it took (tests/e2e/test_25_docker_threads.py). Pulls get their
    # own threads, the other calls theirs; together within the docker
    # client's connection pool (10).
    _calls = ThreadPoolExecutor(max_workers=6, thread_name_prefix="docker")
    _pulls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docker-pull")

    def docker(self, method, *args, **kwargs):
        """A docker call in a thread of its kind; returns a Future."""
        pool = self._pulls if method == "pull" else self._calls
        return asyncio.wrap_future(pool.submit(self._docker, method, *args, **kwargs))

    def _docker(self, method, *args, **kwargs):
        """dockerspawner's docker call (in its thread), made again every
        second for up to engine_wait seconds while the engine's API cannot
        be connected to."""
        deadline = time.monotonic() + self.engine_wait
        while True:
            try:
                return super()._docker(method, *args, **kwargs)
            except Exception as e:
                if not engine_unreachable(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(1)

    @default("object_name")
    def _object_name_default(self):
        server = self._escape(self.name) if self.name else ""
        return service_name(self.prefix, self.escaped_name, escaped_server=server)

    # -- per-user values ---------------------------------------------------
    def allowed_profiles(self):
        """The profiles this user may choose (their groups, read now)."""
        groups = [g.name for g in self.user.groups]
        return profiles_for(self.user.name, groups, self.profiles, self.suffix_rules)

    def chosen_profile(self, user_options=None):
        """The Profile that `user_options` (default: this spawn's) asks for,
        or None; ProfileRefused (HTTP 400) for one this user may not choose.
        The one place a choice is checked: JupyterHub calls it through
        apply_user_options before anything is created, start() again."""
        options = self.user_options if user_options is None else user_options
        try:
            return choose_profile(self.allowed_profiles(), self.default_profile, options)
        except ValueError as e:
            raise ProfileRefused(f"Your server was not started: {e}") from None

    @default("apply_user_options")
    def _apply_user_options_default(self):
        return lambda spawner, user_options: spawner.apply_profile(user_options)

    def apply_profile(self, user_options):
        """JupyterHub's apply_user_options: refuse a profile this user may
        not choose before anything is made. JupyterHub has stored the
        options already, as the next spawn's default: a refused choice must
        not be, so the last profile that started is put back."""
        try:
            self.chosen_profile(user_options)
        except ProfileRefused:
            kept = {}
            if self._last_profile in {p.key for p in self.allowed_profiles()}:
                kept = {"profile": self._last_profile}
            self.user_options = kept
            if self.orm_spawner is not None:
                self.orm_spawner.user_options = kept
                if self.db is not None:
                    self.db.commit()
            raise

    def get_state(self):
        state = super().get_state()
        if self._last_profile:
            state["profile"] = self._last_profile  # kept across hub restarts
        return state

    def load_state(self, state):
        super().load_state(state)
        self._last_profile = state.get("profile", "")

    @default("options_from_form")
    def _options_from_form_default(self):
        # the form's radio field, as the API takes it: {"profile": "<key>"}
        def from_form(form_data):
            value = form_data.get("profile") or [""]
            return {"profile": value[0]} if value[0] else {}
        return from_form

    @default("options_form")
    def _options_form_default(self):
        return lambda spawner: spawner.profile_form()

    def profile_form(self):
        """The spawn page's form: empty (no form) when there is no choice."""
        allowed = self.allowed_profiles()
        if not allowed:
            return ""
        try:
            chosen = self.chosen_profile().key  # the last choice, kept by JupyterHub
        except ProfileRefused:
            chosen = choose_profile(allowed, self.default_profile, {}).key
        return profile_form(allowed, chosen, self.user_plan, self.placement)

    def user_plan(self, profile=None):
        """This spawn's plan: the suffix rule, else the profile chosen."""
        return plan_for_user(
            self.user.name,
            self._base_image,
            self.base_constraints,
            self.default_gpu,
            self.suffix_rules,
            profile if profile is not None else self.chosen_profile(),
        )

    @property
    def local_volume(self):
        """A local volume that the server must chown for its user."""
        return self.storage is not None and self.storage.type == "local" \
            and self.chown_local_volume

    @property
    def mounts(self):
        """Swarm `type=volume` mounts (SwarmSpawner would make bind mounts,
        which swarm rejects for named volumes)."""
        if self.storage is None:
            return []
        spec = storage_mount(self.storage, self.escaped_name)
        driver = spec.pop("driver_config", None)
        if driver:
            spec["driver_config"] = DriverConfig(driver["name"], driver["options"])
        return [Mount(**spec)]

    def get_env(self):
        env = super().get_env()
        gpu = self._plan.gpu if self._plan else self.default_gpu
        if gpu.visible:
            env["NVIDIA_VISIBLE_DEVICES"] = gpu.visible
        elif not gpu.count:
            # CUDA images set `all`: where nvidia is the default runtime they
            # would see every GPU, those reserved for others too. (Counted
            # GPUs: the runtime takes swarm's DOCKER_RESOURCE_NVIDIA-GPU.)
            env.setdefault("NVIDIA_VISIBLE_DEVICES", "void")
        if self.local_volume:
            # docker-stacks images start as root, chown this, then drop to
            # the notebook user: a new named volume is root-owned.
            env.setdefault("CHOWN_EXTRA", self.storage.target)
        return env

    async def start(self):
        """_start, counting a failure by its kind (SPAWN_FAILURES): the one
        place a spawn's failure is counted. A cancelled start is a timeout
        when start_timeout has passed (JupyterHub's wait_for cancels it
        then); earlier it is a user's cancel, not counted."""
        began = time.monotonic()
        try:
            return await self._start()
        except SpawnFailed as e:
            SPAWN_FAILURES.labels(e.kind).inc()
            raise
        except web.HTTPError as e:
            if e.status_code < 500:  # a refused choice (a profile): the user's, not a failure
                raise
            SPAWN_FAILURES.labels("other").inc()
            raise
        except asyncio.CancelledError:
            # JupyterHub starts its clock just before this coroutine's
            # first step: allow a second of scheduling
            if time.monotonic() - began >= self.start_timeout - 1:
                SPAWN_FAILURES.labels("timeout").inc()
            raise
        except Exception:
            SPAWN_FAILURES.labels("other").inc()
            raise

    async def _start(self):
        profile = self.chosen_profile()
        self._last_profile = profile.key if profile else ""
        plan = self._plan = self.user_plan(profile)
        self.image = plan.image
        self.extra_placement_spec = {
            "constraints": list(plan.constraints) or None,
            "preferences": list(self.placement.preferences) or None,
            "platforms": list(self.placement.platforms) or None,
        }
        self.extra_resources_spec = (
            {"generic_resources": {"NVIDIA-GPU": plan.gpu.count}} if plan.gpu.count else {}
        )
        container_spec = {}
        if self.local_volume:
            container_spec["user"] = "root"
        if self._ssl_secrets:
            container_spec["secrets"] = list(self._ssl_secrets)
        self.extra_container_spec = container_spec
        # A server that exits or dies stays ended: swarm would start a new
        # task at a new address (the hub still routing to the old one),
        # maybe on another node with another, empty local volume. The hub's
        # poll then sees the task ended and the user starts afresh.
        task_spec = {"restart_policy": RestartPolicy(condition="none")}
        if self._ssl_name:
            task_spec["networks"] = [
                NetworkAttachmentConfig(self.network_name, aliases=[self._ssl_name])]
        self.extra_task_spec = task_spec
        if self.hub_name:
            self.extra_create_kwargs = {"labels": {HUB_LABEL: self.hub_name}}
        self._events = []
        await self._make_user_directory()
        ip, port = await super().start()
        if self.server is not None:  # None only for spawners built by tests
            await self._wait_for_port(ip, port)
        return ip, port

    async def _make_user_directory(self):
        if self.storage is None:
            return
        path = user_directory(self.storage, self.escaped_name)
        if path is None:
            return
        st = self.storage
        root = st.mkdir_root
        kind = "CIFS" if st.type == "cifs" else "NFS"
        share = (f"//{st.host}{share_root(st)}" if st.type == "cifs"
                 else f"{st.host}:{share_root(st)}")
        if not self._share_is_mounted(root):
            # docker would mount a directory that does not exist: refuse
            # now, with the fix, before any service exists
            raise SpawnFailed(
                f"Your server could not start: SPAWNER_PERSISTENCE_VOLUME_TYPE is {st.type}, "
                f"but SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH={root} is not a mount point in "
                f"the hub, so the hub cannot create {path} before docker mounts it. Mount "
                f"the share's root {share} (SPAWNER_PERSISTENCE_{kind}_ROOT) there: deploy "
                f"with -c docker-compose.{kind.lower()}.yml after the stack file "
                f"(docs/storage.md).")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise SpawnFailed(
                f"Your server could not start: the hub could not create {path} on the share "
                f"{share} mounted at SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH={root}: "
                f"{e.strerror or e}. The export must let the hub's node create directories "
                f"as root (NFS: no_root_squash for it), or create the directory beforehand, "
                f"owned by SPAWNER_PERSISTENCE_VOLUME_OWNER (docs/storage.md).") from None
        try:
            os.chown(path, *st.owner)
        except OSError as e:
            self.log.warning("Could not chown %s to %s:%s (SPAWNER_PERSISTENCE_VOLUME_OWNER): "
                             "%s", path, *st.owner, e)

    @staticmethod
    def _share_is_mounted(path):
        """True when path is a mount point in the hub's container (the stack's
        share-root volume of docker-compose.nfs.yml or .cifs.yml)."""
        return os.path.ismount(path)

    # -- internal TLS: the server's certificates as swarm secrets --------------
    # dockerspawner copies them into a docker volume on the hub's node, which
    # a service on any other node never sees. Swarm secrets reach the task on
    # whichever node it runs; they are made for one spawn and removed with
    # the service.
    SSL_LABEL = "jupyterhub-swarm.server"
    SSL_DIR = "/run/secrets"  # where swarm puts secrets in a Linux container
    SSL_FILES = (  # (the hub's key in cert_paths, file name, private)
        ("keyfile", "jupyterhub-ssl.key", True),
        ("certfile", "jupyterhub-ssl.crt", False),
        ("cafile", "jupyterhub-ssl-ca.crt", False),
    )

    @property
    def secret_owner(self):
        """(uid, gid) of the secrets' files: the notebook user's."""
        return self.storage.owner if self.storage is not None else (0, 0)

    async def create_certs(self):
        """The server's certificate, for a name of this spawn only: a network
        alias of the service (get_ip_and_port). Right after a stop, swarm's
        DNS may still answer the service's name with the former task's
        address; a new name has no past."""
        # with the suffixes of the secrets: at most 64 characters
        base = shorten(self.service_name, 40, digits=8)
        self._ssl_name = f"{base}-{secrets.token_hex(3)}"
        self.ssl_alt_names = [f"DNS:{self._ssl_name}", f"DNS:{self.service_name}"]
        return await super().create_certs()

    async def move_certs(self, paths):
        """Make the server's key, certificate and CA bundle swarm secrets
        named after this spawn's alias (create_certs runs first), labelled
        with the service's name; return their paths in the task."""
        await self._remove_ssl_secrets()  # left by a hub that stopped meanwhile
        uid, gid = self.secret_owner
        refs, moved = [], {}
        for key, filename, private in self.SSL_FILES:
            with open(paths[key], "rb") as f:
                data = f.read()
            name = f"{self._ssl_name}-{filename.replace('jupyterhub-', '').replace('.', '-')}"
            labels = {self.SSL_LABEL: self.service_name}
            if self.hub_name:
                labels[HUB_LABEL] = self.hub_name
            created = await self.docker("create_secret", name, data, labels=labels)
            # the key: readable by the notebook user only (the owner of the
            # user's directory, SPAWNER_PERSISTENCE_VOLUME_OWNER)
            refs.append(SecretReference(
                created["ID"], name, filename=filename, uid=str(uid), gid=str(gid),
                mode=0o400 if private else 0o444))
            moved[key] = f"{self.SSL_DIR}/{filename}"
        self._ssl_secrets = refs
        self.log.info("Internal TLS certificates of %s are swarm secrets %s", self.service_name,
                      ", ".join(r["SecretName"] for r in refs))
        return moved

    async def _remove(self, method, ident, what):
        """Remove a docker object; one that is gone already is no error."""
        try:
            await self.docker(method, ident)
        except NotFound:
            pass
        except Exception as e:
            self.log.warning("Could not remove %s: %s", what, e)

    async def _remove_ssl_secrets(self):
        if not self.internal_ssl:
            return
        try:
            found = await self.docker(
                "secrets", filters={"label": f"{self.SSL_LABEL}={self.service_name}"})
        except Exception as e:
            self.log.warning("Could not list the TLS secrets of %s: %s", self.service_name, e)
            return
        for secret in found:
            await self._remove("remove_secret", secret["ID"], f"secret {secret['Spec']['Name']}")

    async def stop(self, now=False):
        await super().stop(now=now)
        await self._remove_ssl_secrets()

    # -- waiting for the task, with swarm's reasons --------------------------
    def scrub(self, text):
        """Swarm's mount errors quote the volume options: hide them, since
        CIFS options may carry credentials."""
        opts = self.storage.opts.strip(",") if self.storage is not None else ""
        if opts:
            text = text.replace(opts, "<volume options hidden>")
        return re.sub(r"(password|pass|username|user|credentials)=[^,\s]*", r"\1=***", text)

    def _event(self, progress, message):
        self._events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self.service_name, message)

    async def progress(self):
        shown = 0
        while True:
            while shown < len(self._events):
                yield self._events[shown]
                shown += 1
            if self._spawn_future is not None and self._spawn_future.done():
                return
            await asyncio.sleep(0.25)

    async def poll(self):
        """dockerspawner's poll. A server whose task ended (it exited or
        died: swarm does not restart it) has its service and secrets
        removed here, as JupyterHub calls stop() only for servers that poll
        says still run."""
        status = await super().poll()
        if status is None and given_up(self._polled_task):
            # its node went down: swarm keeps saying "running" for a task it
            # cannot reach, but wants it shut down (and with restart
            # condition none makes no other): the server is gone
            task = self._polled_task
            self.log.info("The server %s is lost: swarm gave up its task on node %s (%s, "
                          "desired %s): removing its service", self.service_name,
                          task.get("NodeID", "?")[:12], task["Status"].get("State"),
                          task.get("DesiredState"))
            await self._remove_service()
            return f"lost with its node {task.get('NodeID', '?')[:12]}"
        if status is not None and status != 0:  # 0: no service
            ended = last_ended(await self._tasks())
            if ended:
                self.log.info("The server %s ended (%s: %s): removing its service",
                              self.service_name, ended["State"], self.scrub(task_reason(ended)))
                await self._remove_service()
        return status

    _polled_task = None  # the task dockerspawner's poll looked at last

    async def get_task(self):
        self._polled_task = task = await super().get_task()
        return task

    async def _tasks(self):
        return await self.docker("tasks", filters={"service": self.service_name})

    async def pull_image(self, image):
        """dockerspawner's check/pull on the hub's node, failing with a
        message that names the image (dockerspawner lets docker's
        ImageNotFound through, which the spawn page does not show)."""
        try:
            await super().pull_image(image)
        except APIError as e:
            if isinstance(e, NotFound) and self.pull_policy == "never":
                reason = (f"the image {image} is not on the hub's node, and "
                          "SPAWNER_PULL_POLICY=never does not pull images")
            else:
                reason = f"could not pull the image {image}: {e.explanation or e}"
            raise SpawnFailed(f"Your server could not start: {reason}", "image") from None
        if image == self.image and self.pull_policy != "skip":  # the server's (not move_certs')
            self.image = await self.pin(image)

    async def pin(self, image):
        """pinned_image of the copy on the hub's node (just checked or
        pulled): the server runs what the hub checked, on any node, and a
        tag moved in the registry does not change it until the hub pulls
        again (always). The tag as it was when docker cannot say."""
        try:
            pinned = await pin_to_held(lambda i: self.docker("inspect_image", i), image)
        except Exception as e:
            self.log.warning("Could not read the digest of %s on the hub's node: %s", image, e)
            return image
        if pinned != image:
            self.log.info("%s is %s on the hub's node: %s runs that", image,
                          pinned.rpartition("@")[2], self.service_name)
        return pinned

    async def start_object(self):
        """Wait until the new service's task runs, failing with swarm's
        reason. The first look that finds a task with a node observes
        NODE_WAIT: the seconds since the service was created (just before)."""
        started = time.monotonic()
        last = None
        placed = False
        try:
            while True:
                waited = time.monotonic() - started
                tasks = await self._tasks()
                if not placed and any(t.get("NodeID") for t in tasks):
                    placed = True
                    NODE_WAIT.observe(time.monotonic() - started)
                now = judge_start(tasks, waited, self.resource_wait)
                reason = self.scrub(now.reason)
                if now.kind == "running":
                    return
                if now.kind == "ended":
                    await self._fail(f"swarm {now.state} the task: {reason}", ended_kind(now.reason))
                if now.kind == "unplaceable":
                    await self._fail(reason + self._placement_hint(reason),
                                     unplaceable_kind(now.reason))
                if now.kind == "no_resources":
                    await self._fail(f"{reason} (waited {waited:.0f}s{self._wanted_hint(reason)})",
                                     "no_resources")
                if now.kind == "no_address":
                    await self._fail(await self._no_address_reason(waited), "no_address")
                if now.kind == "waiting" and (now.state, reason) != last:
                    last = (now.state, reason)
                    self._event(*self._progress_message(now.state, reason))
                await asyncio.sleep(0.25)
        except asyncio.CancelledError:
            # start_timeout passed, or the user cancelled the pending spawn:
            # remove the service, or swarm keeps trying it for nobody.
            await self._remove_service()
            raise

    async def _wait_for_port(self, ip, port):
        """Return once the server accepts connections, looking every 0.1 s.

        After start() returns, the hub checks the server over HTTP
        (User._wait_up) with a random exponential backoff, 0.2 s doubling up
        to 5 s between tries: it noticed a running server up to seconds
        late (bench/overhead.py, docs/performance.md). Once the port accepts,
        the hub's first try succeeds: the server answers as soon as its
        event loop runs. Every second the task is looked at, so a server
        that exits while starting fails with swarm's reason. After
        http_timeout the hub's own check decides, as before."""
        deadline = time.monotonic() + self.http_timeout
        next_look = time.monotonic() + 1
        try:
            while time.monotonic() < deadline:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1)
                except (OSError, asyncio.TimeoutError):
                    pass
                else:
                    writer.close()
                    return
                if time.monotonic() > next_look:
                    next_look = time.monotonic() + 1
                    tasks = await self._tasks()
                    if not any(t.get("Status", {}).get("State") == "running" for t in tasks):
                        ended = last_ended(tasks)
                        reason = self.scrub(task_reason(ended)) if ended else ""
                        await self._fail(f"the server stopped while starting: {reason}",
                                         "exited")
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            # start_timeout passed or the spawn was cancelled, as in start_object
            await self._remove_service()
            raise

    def _progress_message(self, state, reason):
        progress = {"pending": 20, "assigned": 30, "preparing": 40}.get(state, 50)
        if state == "pending" and "insufficient resources" in reason and self._plan.gpu.count:
            count = self._plan.gpu.count
            text = f"waiting for a free GPU ({count} requested)"
        else:
            text = {"pending": "waiting for a node",
                    "preparing": "preparing (pulling image)"}.get(state, state)
        if reason.strip().lower() in ("", state):  # swarm's "starting: starting"
            return progress, text
        return progress, f"{text}: {reason}"

    def _placement_hint(self, err):
        """What the spec asks for that no node offers."""
        hints = []
        if "constraints not satisfied" in err and self._plan.constraints:
            hints.append("constraints " + ", ".join(self._plan.constraints))
        if "unsupported platform" in err and self.placement.platforms:
            hints.append("platforms " + ", ".join(f"{a}/{o}" for a, o in self.placement.platforms))
        return f" (this server needs {'; '.join(hints)})" if hints else ""

    def _wanted_hint(self, err):
        if "insufficient resources" not in err:
            return ""
        wanted = []
        if self._plan.gpu.count:
            wanted.append(f"{self._plan.gpu.count} GPU")
        if self.cpu_guarantee:
            wanted.append(f"{self.cpu_guarantee:g} CPU")
        if self.mem_guarantee:
            wanted.append(f"{self.mem_guarantee / 1024**2:g} MiB memory")
        return f" for a node with {', '.join(wanted)} free" if wanted else ""

    async def _no_address_reason(self, waited):
        network = await self.docker("inspect_network", self.network_name)
        subnets = [c["Subnet"] for c in (network.get("IPAM") or {}).get("Config") or []
                   if c.get("Subnet")]
        tasks = await self.docker("tasks", filters={"desired-state": "running"})
        services = await self.docker("services")
        nodes = await self.docker("nodes")
        held = addresses_held(tasks, services, network["Id"])
        return no_address_reason(self.network_name, subnets, subnet_room(subnets), held,
                                 len(nodes), waited)

    async def _remove_service(self):
        await self._remove("remove_service", self.object_id or self.service_name,
                           self.service_name)
        self.object_id = ""
        await self._remove_ssl_secrets()

    async def _fail(self, reason, kind):
        await self._remove_service()
        raise SpawnFailed(f"Your server could not start: {reason}", kind)

    async def get_ip_and_port(self):
        """The running task's own address on the user network.

        The service name may still resolve to the previous server's container
        for a few seconds after a stop; the task address cannot. With
        internal TLS, a name it is: the server's certificate is made before
        the task has an address, for the network alias of this spawn
        (create_certs), which resolves to this task only.
        """
        if self.internal_ssl:
            return self._ssl_name or self.service_name, self.port
        for task in await self._tasks():
            if task.get("Status", {}).get("State") != "running":
                continue
            for attachment in task.get("NetworksAttachments", []):
                if attachment["Network"]["Spec"]["Name"] == self.network_name:
                    return attachment["Addresses"][0].split("/")[0], self.port
        raise SpawnFailed(f"no running task of {self.service_name} on {self.network_name}")


# --------------------------------------------------------------------------
# Proxy: an external configurable-http-proxy gets its internal TLS files
# --------------------------------------------------------------------------

# Where the stack mounts the volume the hub shares with the proxy service.
PROXY_CERTS_DIR = "/srv/jupyterhub/proxy-certs"
# The official configurable-http-proxy image runs as nobody (65534).
PROXY_CERTS_OWNER = (65534, 65534)


def proxy_cert_files(proxy_certs, trust_bundles):
    """{file name in PROXY_CERTS_DIR: (source path, private)} for the
    proxy's API (server) and client sides, as JupyterHub hands them to a
    proxy it starts itself (ConfigurableHTTPProxy._get_ssl_options)."""
    api, client = proxy_certs["proxy-api"], proxy_certs["proxy-client"]
    return {
        "api.key": (api["keyfile"], True),
        "api.crt": (api["certfile"], False),
        "api-ca.crt": (trust_bundles["proxy-api-ca"], False),
        "client.key": (client["keyfile"], True),
        "client.crt": (client["certfile"], False),
        "client-ca.crt": (trust_bundles["proxy-client-ca"], False),
    }


def export_proxy_certs(files, directory, owner):
    """Copy `files` into `directory` for the proxy's user, each replaced in
    one rename, so the proxy never reads half a file."""
    for name, (source, private) in files.items():
        with open(source, "rb") as f:
            data = f.read()
        target = os.path.join(directory, name)
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.chown(tmp, *owner)
        except PermissionError:  # a hub not running as root
            pass
        os.chmod(tmp, 0o400 if private else 0o444)
        os.replace(tmp, target)


# JupyterHub's own certificate for the hub (internal_ssl), in its certipy
# store under HUB_INTERNAL_SSL_PATH.
HUB_CERT_RECORD = "hub-internal"


def certificate_names(pem):
    """The subject alternative names of a PEM certificate, as JupyterHub
    writes them ("DNS:jupyterhub", "IP:10.0.0.5")."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({f"DNS:{name}" for name in san.get_values_for_type(x509.DNSName)}
            | {f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)})


def renew_hub_certificate(path, names):
    """Remove the hub's certificate kept in the certipy store at `path` if
    it lacks one of `names` ("DNS:hub-relay"), so that JupyterHub signs a
    new one with them at start; JupyterHub itself keeps an existing one
    whatever its names. The CAs stay: servers and the proxy, which trust
    the hub's CA, trust the new certificate too. Returns the names that
    were missing (none: nothing removed)."""
    from certipy import CertNotFoundError, CertStore

    if not os.path.exists(os.path.join(path, "certipy.json")):
        return []  # the first start: JupyterHub makes it with every name
    store = CertStore(containing_dir=path)
    try:
        record = store.get_record(HUB_CERT_RECORD)
        with open(record["files"]["cert"], "rb") as f:
            have = certificate_names(f.read())
    except (CertNotFoundError, KeyError, OSError, ValueError):
        return []  # JupyterHub makes a missing one; an unreadable one stops it, saying why
    def normal(name):  # "IP:0:0::1" and "IP:::1" are one address
        return f"IP:{ipaddress.ip_address(name[3:])}" if name.startswith("IP:") else name

    held = {normal(n) for n in have}
    missing = [n for n in names if normal(n) not in held]
    if missing:
        store.remove_files(HUB_CERT_RECORD, delete_dir=True)
    return missing


class QueuedStreamHandler(logging.StreamHandler):
    """The hub's log to stderr (its `console` handler), written by a thread
    of its own. The stream is a pipe to the container engine, and a write
    waits when the engine reads slowly, as under the load of a class
    starting: on the event loop that wait stalls every request of the hub.
    The line is formatted where it is logged and written in order; close()
    (at exit: logging.shutdown) writes what is queued first."""

    def __init__(self, stream=None):
        super().__init__(stream)
        self.lines = queue.Queue()
        self.writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self.writer.start()

    def emit(self, record):
        try:
            self.lines.put(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def _write(self):
        while True:
            line = self.lines.get()
            try:
                if line is None:
                    return
                self.stream.write(line)
                if self.lines.empty():
                    self.stream.flush()
            except (OSError, ValueError):  # stderr closed: nowhere to write
                pass
            finally:
                self.lines.task_done()

    def flush(self):
        """Every line logged so far, written."""
        if self.writer.is_alive():
            self.lines.join()
        super().flush()

    def close(self):
        if self.writer.is_alive():
            self.lines.put(None)
            self.writer.join(timeout=10)
        super().close()


class FreshResolver(ThreadedResolver):
    """Host names through getaddrinfo, asked anew for every connection.

    JupyterHub 6 talks HTTP through aiohttp with aiodns, whose c-ares query
    cache keeps an answer for its TTL; docker's embedded DNS gives service
    names a TTL of 600 s. After the proxy restarted at a new address, the
    hub kept dialling the old one for up to 10 minutes, and the routes were
    not put back (tests/e2e/test_09_proxy_restart.py). getaddrinfo asks
    docker's DNS each time; with the connector's own cache off
    (update_hub), a new address is used at the next request."""

    def __init__(self):  # made by the configuration, before any event loop
        pass

    @property
    def _loop(self):
        return asyncio.get_running_loop()


HUB_LABEL = "jupyterhub-swarm.hub"  # on services and secrets: the hub that made them
# seconds between the hub's looks for its leftovers while docker cannot be
# asked (remove_leftovers); then every last one
LEFTOVER_RETRY = (5, 10, 20, 40, 60)


def owned_services(app):
    """Service names of the servers this hub runs or is starting now."""
    return {spawner.service_name for user in app.users.values()
            for spawner in user.spawners.values()
            if isinstance(spawner, SwarmUserSpawner) and spawner.active}


def find_leftovers(services, secrets_, owned):
    """What a hub may remove: its labelled services that no server of its
    owns, and its labelled TLS secrets whose server it does not own. Pure:
    takes docker's service and secret lists. Returns (services, secrets) as
    [(id, name)]."""
    services = [(s["ID"], s["Spec"]["Name"]) for s in services
                if s["Spec"]["Name"] not in owned
                # the pre-puller's jobs: it removes its own (Prepuller)
                and PREPULL_LABEL not in (s["Spec"].get("Labels") or {})]
    secrets_ = [(s["ID"], s["Spec"]["Name"]) for s in secrets_
                if s["Spec"].get("Labels", {}).get(SwarmUserSpawner.SSL_LABEL) not in owned]
    return services, secrets_


async def remove_leftovers(app, hub_name, log, client=None):
    """At hub start: remove the services and TLS secrets labelled as this
    hub's that no server of this hub owns (a hub killed mid-spawn leaves
    them: the database never learnt of them). Never anything without this
    hub's label: another stack's or another hub's objects stay.
    Returns the (services, secrets) names removed; None when docker could
    not be asked (SwarmProxy.remove_leftovers tries again)."""
    label = {"label": f"{HUB_LABEL}={hub_name}"}
    try:
        # version="auto" asks the engine already: inside the try
        client = client or await asyncio.to_thread(
            docker_py.APIClient, version="auto", **docker_py.utils.kwargs_from_env())
        found = await asyncio.to_thread(client.services, filters=label)
        found_secrets = await asyncio.to_thread(client.secrets, filters=label)
    except Exception as e:
        log.warning("Could not look for leftover services of %s: %s", hub_name, e)
        return None
    # what this hub owns, read after the listing: a spawn that began before
    # it is active now; each name is checked again right before its removal
    services, secrets_ = find_leftovers(found, found_secrets, owned_services(app))

    async def remove(kind, method, leftovers):
        """Names of `leftovers` ([(id, name)]) removed with `method`."""
        done = []
        for ident, name in leftovers:
            if kind == "service" and name in owned_services(app):
                continue  # a spawn began meanwhile
            try:
                await asyncio.to_thread(method, ident)
            except NotFound:
                continue
            except Exception as e:
                log.warning("Could not remove leftover %s %s: %s", kind, name, e)
                continue
            done.append(name)
        return done

    removed = (await remove("service", client.remove_service, services),
               await remove("secret", client.remove_secret, secrets_))
    if removed[0] or removed[1]:
        log.warning("Removed what an earlier run of this hub left behind: services %s; "
                    "TLS secrets %s", ", ".join(removed[0]) or "none",
                    ", ".join(removed[1]) or "none")
    else:
        log.info("No leftover services or secrets of %s", hub_name)
    return removed


# --------------------------------------------------------------------------
# Pre-pulling the notebook images on every node that may run them
# --------------------------------------------------------------------------
# One global swarm service per image, with restart condition none: a task on
# every node the image's servers may run on, which pulls the image, runs
# `true` and is not started again. Swarm's agent pulls a tag every time it
# prepares a task (and uses the node's copy when the registry cannot be
# reached), as it does for the servers. Not a global *job* (ServiceMode
# GlobalJob, API 1.41): removing a job leaves its tasks in swarm and their
# exited containers on every node, on Docker 20.10 (moby/moby#44312, #42789);
# removing a plain service removes both.

PREPULL_LABEL = "jupyterhub-swarm.prepull"  # on pre-pull jobs: the image they pull
# "--" occurs in a user server's service name only in a shortened one, which
# is 63 characters long (service_name): this prefix and 12 hex digits (29
# characters) is never a user server's name, and still starts with "jupyter-".
PREPULL_PREFIX = "jupyter-prepull" + SHORTENED_MARK
PREPULL_COMMAND = ["true"]  # in the image: exits 0 without starting Jupyter
PREPULL_CPU = 10**7  # 0.01 CPU, a limit: a job reserves nothing
PREPULL_MEMORY = 6 * 1024**2  # dockerd's least memory limit
GPU_KIND = "NVIDIA-GPU"  # the generic resource counted GPUs reserve (_start)


@dataclass(frozen=True)
class PullTarget:
    """An image and where its servers may run: their constraints (swarm's
    spelling) and the counted GPUs they reserve (only nodes that have that
    many run them)."""

    image: str
    constraints: tuple = ()
    gpus: int = 0


def pull_targets(image, constraints, gpu, suffix_rules, profiles):
    """The PullTargets of every server the configuration can make: the
    plain settings', each suffix rule's and each profile's, in that order,
    each once."""
    rules = [None] + list(suffix_rules.values()) + [p.rule for p in profiles]
    targets = []
    for rule in rules:
        plan = rule_plan(image, constraints, gpu, rule)
        target = PullTarget(plan.image, plan.constraints, plan.gpu.count)
        if target not in targets:
            targets.append(target)
    return tuple(targets)


def _constraint_parts(constraint):
    for op in ("==", "!="):
        if op in constraint:
            key, value = constraint.split(op, 1)
            return key.strip(), op, value.strip()
    return constraint.strip(), "==", ""


def _node_ip_matches(address, value):
    try:
        node_ip = ipaddress.ip_address(address)
        if "/" in value:
            return node_ip in ipaddress.ip_network(value, strict=False)
        return node_ip == ipaddress.ip_address(value)
    except ValueError:
        return False


def node_matches(node, constraints):
    """Does swarm's node document match every constraint? As swarmkit's
    manager/constraint NodeMatches: values compared ignoring case, label
    names as written, a missing label is "", node.ip an address or a
    subnet, an unknown key matches no node."""
    desc, spec = node.get("Description") or {}, node.get("Spec") or {}
    platform = desc.get("Platform") or {}
    for constraint in constraints:
        key, op, value = _constraint_parts(constraint)
        lowered = key.lower()
        if lowered == "node.ip":
            found = _node_ip_matches((node.get("Status") or {}).get("Addr", ""), value)
        else:
            if lowered == "node.id":
                actual = node.get("ID", "")
            elif lowered == "node.hostname":
                actual = desc.get("Hostname", "")
            elif lowered == "node.role":
                actual = spec.get("Role", "")
            elif lowered == "node.platform.os":
                actual = platform.get("OS", "")
            elif lowered == "node.platform.arch":
                actual = platform.get("Architecture", "")
            elif lowered.startswith("node.labels."):
                actual = (spec.get("Labels") or {}).get(key[len("node.labels."):], "")
            elif lowered.startswith("engine.labels."):
                labels = (desc.get("Engine") or {}).get("Labels") or {}
                actual = labels.get(key[len("engine.labels."):], "")
            else:
                return False
            found = actual.lower() == value.lower()
        if found != (op == "=="):
            return False
    return True


_SAME_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def platform_matches(node, platforms):
    """Is the node's platform one of `platforms` ((arch, os), ...; none:
    any)? As swarmkit's PlatformFilter: as written, x86_64 = amd64 and
    aarch64 = arm64."""
    if not platforms:
        return True
    platform = (node.get("Description") or {}).get("Platform") or {}
    arch = platform.get("Architecture", "")
    for want_arch, want_os in platforms:
        if (_SAME_ARCH.get(want_arch, want_arch) == _SAME_ARCH.get(arch, arch)
                and want_os == platform.get("OS", "")):
            return True
    return False


def node_gpus(node):
    """The counted GPUs a node advertises (its NVIDIA-GPU generic resources)."""
    resources = (node.get("Description") or {}).get("Resources") or {}
    return _generic(resources.get("GenericResources")).get(GPU_KIND, 0)


def ready_nodes(nodes):
    """The nodes swarm gives new tasks to: ready and active."""
    return [n for n in nodes if (n.get("Status") or {}).get("State") == "ready"
            and (n.get("Spec") or {}).get("Availability") == "active"]


def target_nodes(target, nodes, platforms):
    """IDs of `nodes` a server of `target` may run on."""
    return frozenset(n["ID"] for n in nodes
                     if node_matches(n, target.constraints) and platform_matches(n, platforms)
                     and node_gpus(n) >= target.gpus)


def images_wanted(targets, nodes, platforms):
    """{image: IDs of the ready nodes that may run it}, images in the order
    of `targets`; an image no ready node may run is left out."""
    ready = ready_nodes(nodes)
    wanted = {}
    for target in targets:
        wanted[target.image] = wanted.get(target.image, frozenset()) | target_nodes(
            target, ready, platforms)
    return {image: ids for image, ids in wanted.items() if ids}


def job_constraints(image, targets, nodes, platforms):
    """The placement constraints of the image's job: with one target, its
    own constraints and node.id!= for each node they let in that lacks the
    GPUs; with several (the image in rules placed differently), node.id!=
    for each node none of them may run on. Swarm's constraints are all
    ANDed: no other way to say "these or those"."""
    mine = [t for t in targets if t.image == image]
    allowed = frozenset().union(*(target_nodes(t, nodes, platforms) for t in mine))
    base = list(mine[0].constraints) if len(mine) == 1 else []
    candidates = [n for n in nodes if node_matches(n, base)]
    return base + [f"node.id!={n['ID']}" for n in candidates if n["ID"] not in allowed]


def with_hub_node(wanted, hub_node):
    """PullTargets placing each image of `wanted` on the hub's node as well
    (pure; none when the node is unknown)."""
    if not hub_node:
        return ()
    return tuple(PullTarget(image, (f"node.id=={hub_node}",)) for image in wanted)


def prepull_job_name(hub_name, image):
    digest = hashlib.sha256(f"{hub_name}\0{image}".encode()).hexdigest()[:12]
    return PREPULL_PREFIX + digest


def to_pull(wanted, done, in_flight, now, retry):
    """{image: node IDs} the next jobs are for: each wanted image without a
    job in flight that has a wanted node where it was neither pulled nor
    tried and failed less than `retry` seconds before `now`. `done`:
    {image: {node ID: (pulled, monotonic time)}}. Pure."""
    result = {}
    for image, nodes in wanted.items():
        if image in in_flight:
            continue
        seen = done.get(image, {})
        missing = {n for n in nodes
                   if n not in seen or (not seen[n][0] and now - seen[n][1] >= retry)}
        if missing:
            result[image] = frozenset(nodes)
    return result


@dataclass(frozen=True)
class JobOutcome:
    """A finished job: the nodes that have the image now, those where it
    ran but exited non-zero (the image is there all the same) and those
    where it failed, with swarm's reason: ((node ID, reason), ...)."""

    pulled: tuple = ()
    exited: tuple = ()
    failed: tuple = ()


def job_outcome(tasks, expected):
    """The outcome of a job whose `expected` nodes (IDs) all have a task
    that ended, else None (still pulling). A node's newest task counts."""
    newest = {}
    for task in sorted(tasks, key=lambda t: t.get("CreatedAt", "")):
        if task.get("NodeID"):
            newest[task["NodeID"]] = task
    pulled, exited, failed = [], [], []
    for node in sorted(expected):
        task = newest.get(node)
        status = (task or {}).get("Status") or {}
        state = status.get("State")
        if state not in FINAL_STATES:
            return None
        if state == "complete":
            pulled.append(node)
        elif state == "failed" and (status.get("ContainerStatus") or {}).get("ContainerID"):
            exited.append((node, task_reason(status)))  # it ran: the image is there
        else:
            failed.append((node, task_reason(status) or state))
    return JobOutcome(tuple(pulled), tuple(exited), tuple(failed))


def outcome_words(image, outcome, hostname, took):
    """The log's line about a finished job."""
    parts = []
    have = list(outcome.pulled) + [n for n, _ in outcome.exited]
    if have:
        parts.append(f"Pre-pulled {image} on {', '.join(sorted(map(hostname, have)))} "
                     f"in {took:.0f}s")
    for node, reason in outcome.exited:
        parts.append(f"on {hostname(node)} `{' '.join(PREPULL_COMMAND)}` ended with "
                     f"{reason} (the image is there)")
    for node, reason in outcome.failed:
        parts.append(f"could not pre-pull {image} on {hostname(node)}: {reason}")
    return "; ".join(parts)


def stale_jobs(services, hub_name, names):
    """[(id, name)] of the pre-pull jobs a starting hub removes: those
    labelled as this hub's (HUB_LABEL), or, for a hub without a name, the
    unlabelled ones with the names it gives its own jobs. Pure."""
    found = []
    for s in services:
        labels = s["Spec"].get("Labels") or {}
        if PREPULL_LABEL not in labels:
            continue
        owner = labels.get(HUB_LABEL)
        if (hub_name and owner == hub_name) or (
                not hub_name and owner is None and s["Spec"]["Name"] in names):
            found.append((s["ID"], s["Spec"]["Name"]))
    return found


def prepull_spec(image, constraints, platforms, hub_name, reference=None):
    """create_service's arguments for the job pulling `image` (by
    `reference`, a pinned_image of it, if given): a global service whose
    tasks run once (restart condition none)."""
    from docker.types import ContainerSpec, Placement as DockerPlacement, Resources, \
        ServiceMode, TaskTemplate

    labels = {PREPULL_LABEL: image}
    if hub_name:
        labels[HUB_LABEL] = hub_name
    template = TaskTemplate(
        ContainerSpec(reference or image, command=list(PREPULL_COMMAND), labels=labels,
                      env=["NVIDIA_VISIBLE_DEVICES=void"]),
        resources=Resources(cpu_limit=PREPULL_CPU, mem_limit=PREPULL_MEMORY),
        restart_policy=RestartPolicy(condition="none"),
        placement=DockerPlacement(constraints=list(constraints) or None,
                                  platforms=list(platforms) or None))
    return {"task_template": template, "name": prepull_job_name(hub_name, image),
            "labels": labels, "mode": ServiceMode("global")}


@dataclass
class PullJob:
    ident: str
    name: str
    expected: frozenset  # IDs of the nodes it is for
    started: float  # monotonic


class Prepuller:
    """Keeps the notebook images on every node that may run them: at start
    (after removing this hub's jobs of an earlier run), and whenever a look
    at the nodes, every `interval` seconds, finds a ready node that may run
    an image and has not had it pulled. While jobs run, their tasks are
    read every `poll` seconds; a finished job is removed and what it did
    said in the log once. A node where a pull failed is tried again after
    `retry` seconds at the earliest; a job not finished after `timeout`
    seconds is removed (its nodes counted failed). With `pin` (the pull
    policy ifnotpresent, whose servers run the hub node's copy by its
    digest: SwarmUserSpawner.pin), a job pulls that digest, not whatever the
    tag names in the registry now."""

    def __init__(self, targets, platforms, hub_name, log, client=None, interval=60,
                 retry=600, poll=2, timeout=3600, pin=False):
        self.targets, self.platforms, self.hub_name, self.log = targets, platforms, hub_name, log
        self.pin = pin
        self.interval, self.retry, self.poll, self.timeout = interval, retry, poll, timeout
        self._client = client
        self._hub_node = None  # hub_node(), once known
        self._hub_node_unknown = False  # said that docker could not tell it
        self.done = {}  # image -> {node ID: (pulled, monotonic time)}
        self.jobs = {}  # image -> PullJob
        self.hostnames = {}  # node ID -> hostname
        self._failing = False
        self._nowhere = ()  # the images no ready node may run, as last said

    def call(self, method, *args, **kwargs):
        if self._client is None:
            self._client = docker_py.APIClient(version="auto",
                                               **docker_py.utils.kwargs_from_env())
        return asyncio.to_thread(getattr(self._client, method), *args, **kwargs)

    def hostname(self, node):
        return self.hostnames.get(node, node[:12])

    async def remove_stale(self):
        names = {prepull_job_name(self.hub_name, t.image) for t in self.targets}
        found = await self.call("services", filters={"label": PREPULL_LABEL})
        for ident, name in stale_jobs(found, self.hub_name, names):
            try:
                await self.call("remove_service", ident)
            except NotFound:
                continue
            self.log.info("Removed the pre-pull job %s of an earlier run", name)

    async def run(self):
        images = ", ".join(dict.fromkeys(t.image for t in self.targets))
        self.log.info("Pre-pulling %s on every node that may run them (SPAWNER_PREPULL)", images)
        stale_removed = False
        next_look = 0.0
        while True:
            try:
                if not stale_removed:
                    await self.remove_stale()
                    stale_removed = True
                finished = await self.check_jobs()
                if finished or time.monotonic() >= next_look:
                    next_look = time.monotonic() + self.interval
                    await self.start_jobs()
                if self._failing:
                    self.log.info("Pre-pull: the engine answers again")
                self._failing = False
            except Exception as e:
                if not self._failing:  # once per outage
                    self.log.warning("Pre-pull: could not read or change the swarm: %s", e)
                self._failing = True
            await asyncio.sleep(self.poll if self.jobs else max(
                0.0, min(self.poll * 5, next_look - time.monotonic())))

    async def hub_node(self):
        """The ID of the node whose engine the hub talks to (its checks and
        pulls before a spawn happen there); "" when docker cannot say."""
        if self._hub_node is None:
            try:
                self._hub_node = ((await self.call("info")).get("Swarm") or {}).get("NodeID", "")
            except Exception as e:
                if not self._hub_node_unknown:  # once, not at every look
                    self.log.warning("Pre-pull: could not ask the engine for its node: %s", e)
                self._hub_node_unknown = True
                return ""
        return self._hub_node

    async def start_jobs(self):
        nodes = await self.call("nodes")
        self.hostnames = {n["ID"]: (n.get("Description") or {}).get("Hostname", n["ID"][:12])
                          for n in nodes}
        wanted = images_wanted(self.targets, nodes, self.platforms)
        # the hub's own node too (its check before each spawn pulls there,
        # SPAWNER_PULL_POLICY), for each image some node may run
        targets = self.targets + with_hub_node(wanted, await self.hub_node())
        wanted = images_wanted(targets, nodes, self.platforms)
        nowhere = tuple(i for i in dict.fromkeys(t.image for t in self.targets) if i not in wanted)
        if nowhere != self._nowhere:  # said when it changes, not at every look
            self._nowhere = nowhere
            if nowhere:
                self.log.info("Pre-pull: no ready node may run %s now (their constraints, "
                              "platforms or GPUs): not pulled", ", ".join(nowhere))
        for image, expected in to_pull(wanted, self.done, self.jobs, time.monotonic(),
                                       self.retry).items():
            constraints = job_constraints(image, targets, nodes, self.platforms)
            spec = prepull_spec(image, constraints, self.platforms, self.hub_name,
                                await self.reference(image))
            try:
                created = await self.call("create_service", **spec)
            except APIError as e:
                self.log.warning("Pre-pull: could not create the job %s for %s: %s",
                                 spec["name"], image, e.explanation or e)
                now = time.monotonic()
                self.done.setdefault(image, {}).update({n: (False, now) for n in expected})
                continue
            self.jobs[image] = PullJob(created["ID"], spec["name"], expected, time.monotonic())
            self.log.info("Pre-pull: job %s (a global service) pulls %s on %s (constraints: %s)",
                          spec["name"], image, ", ".join(sorted(map(self.hostname, expected))),
                          ", ".join(constraints) or "none")

    async def reference(self, image):
        """What a job pulls for `image`: with `pin`, the digest of the hub
        node's copy (pinned_image); the tag when that node has none."""
        if not self.pin:
            return image
        return await pin_to_held(lambda i: self.call("inspect_image", i), image)

    async def check_jobs(self):
        """Look at the jobs in flight; remove the finished ones. True when
        one finished."""
        finished = False
        ready = {n["ID"] for n in ready_nodes(await self.call("nodes"))} if self.jobs else set()
        for image, job in list(self.jobs.items()):
            tasks = await self.call("tasks", filters={"service": job.ident})
            # a node that left meanwhile is not waited for
            outcome = job_outcome(tasks, job.expected & ready)
            took = time.monotonic() - job.started
            if outcome is None and took < self.timeout:
                continue
            if outcome is None:
                outcome = JobOutcome(failed=tuple(
                    (n, f"not finished after {self.timeout}s") for n in sorted(job.expected)))
            try:
                await self.call("remove_service", job.ident)
            except NotFound:
                pass
            del self.jobs[image]
            finished = True
            now = time.monotonic()
            seen = self.done.setdefault(image, {})
            for node in outcome.pulled:
                seen[node] = (True, now)
            for node, _ in outcome.exited:
                seen[node] = (True, now)
            for node, _ in outcome.failed:
                seen[node] = (False, now)
            words = outcome_words(image, outcome, self.hostname, took)
            (self.log.warning if outcome.failed or outcome.exited else self.log.info)(
                "%s", words)
        return finished


def prepuller_from_config(config, log):
    """The Prepuller of this configuration (c.SwarmUserSpawner), or None
    when pre-pulling is off (prepull False, or a pull policy that does not
    pull: never, skip), saying so in the log."""
    sp = config.SwarmUserSpawner

    def trait(name):
        return sp.get(name, getattr(SwarmUserSpawner, name).default_value)

    if not trait("prepull"):
        log.info("Pre-pull is off (SPAWNER_PREPULL=false)")
        return None
    policy = str(trait("pull_policy")).lower()
    if policy in ("never", "skip"):
        log.info("Pre-pull is off: SPAWNER_PULL_POLICY=%s does not pull images", policy)
        return None
    targets = pull_targets(trait("image"), trait("base_constraints"), trait("default_gpu"),
                           trait("suffix_rules"), trait("profiles"))
    return Prepuller(targets, tuple(trait("placement").platforms), trait("hub_name"), log,
                     interval=trait("prepull_interval"), pin=policy == "ifnotpresent")


class SwarmProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy; with internal TLS and an external proxy, the
    hub writes the proxy's key, certificates and CA bundles into the volume
    it shares with the proxy service, which waits for them before starting
    (docker-compose.swarm.yml).

    The proxy is the part of the hub JupyterHub builds with the app at
    start; it also runs the jobs that follow the hub's start: the route
    watch (external proxy), the removal of leftovers (remove_leftovers),
    the database watch and the pre-puller (Prepuller)."""

    certs_dir = Unicode(PROXY_CERTS_DIR, config=True, help="""
        With internal TLS and an external proxy: the directory, shared with
        the proxy's service, that the hub writes the proxy's TLS files to.""")
    proxy_wait = Integer(60, config=True, help="""
        Seconds the hub waits for an external proxy's API to answer (at
        start-up, and while the proxy restarts) before it gives up.""")
    check_routes_interval = Integer(2, config=True, help="""
        With an external proxy: seconds between looks at its routing table.
        A proxy that restarted has no routes: the hub's and every ready
        server's are added again, and only what differs is written.
        JupyterHub itself checks only every last_activity_interval (5
        minutes). 0: that check alone.""")

    check_database_interval = Integer(10, config=True, help="""
        Seconds between the hub's looks at its database once it has
        started: the log says once when it stops answering and once when it
        is back (requests that need it fail meanwhile). 0: no look.""")

    _route_watch = None  # the task of watch_routes
    _leftovers = None  # the task of remove_leftovers
    _database_watch = None  # the task of watch_database
    _prepull = None  # the task of prepull

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.should_start and self.check_routes_interval:
            self._route_watch = self._in_background(self.watch_routes)
        hub_name = self.config.SwarmUserSpawner.get("hub_name")
        if hub_name:
            self._leftovers = self._in_background(lambda: self.remove_leftovers(hub_name))
        if self.check_database_interval:
            self._database_watch = self._in_background(self.watch_database)
        self._prepull = self._in_background(self.prepull)
        if self.app.internal_ssl and not self.should_start:
            files = proxy_cert_files(self.app.internal_proxy_certs,
                                     self.app.internal_trust_bundles)
            if os.path.isdir(self.certs_dir):
                export_proxy_certs(files, self.certs_dir, PROXY_CERTS_OWNER)
                self.log.info("Internal TLS files for the proxy written to %s", self.certs_dir)
            else:
                self.log.warning(
                    "%s is not mounted: give the external proxy these files yourself: %s",
                    self.certs_dir, ", ".join(f"{n} <- {src}" for n, (src, _) in files.items()))

    @staticmethod
    def _in_background(job):
        """The task of the coroutine job() on the running loop; None when
        there is none (a proxy built outside a running hub: tests)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return loop.create_task(job())

    async def remove_leftovers(self, hub_name, delays=LEFTOVER_RETRY):
        """Once the hub has started (every server it owns loaded and
        polled): remove_leftovers, tried again after each of `delays`
        seconds and then every delays[-1] seconds until docker answers (at
        a first deploy the stack's docker-api may start after the hub)."""
        await self.app._start_future
        tries = 0
        while await remove_leftovers(self.app, hub_name, self.log) is None:
            delay = delays[min(tries, len(delays) - 1)]
            tries += 1
            self.log.info("Looking for leftovers of %s again in %ss (try %d)",
                          hub_name, delay, tries + 1)
            await asyncio.sleep(delay)

    async def prepull(self):
        """Once the hub has started: the Prepuller of the configuration."""
        await self.app._start_future
        prepuller = prepuller_from_config(self.config, self.log)
        if prepuller is not None:
            await prepuller.run()

    async def watch_database(self):
        """Once the hub has started: SELECT 1 every check_database_interval
        seconds, in a thread (the connect timeouts of db_connect_args bound
        it), saying in the log once when the database stops answering and
        once when it answers again. The URL is shown masked."""
        await self.app._start_future
        from sqlalchemy import text

        engine, down_since = self.app.db.get_bind(), None
        where = mask_url(str(self.app.db_url))

        def ping():
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        while True:
            await asyncio.sleep(self.check_database_interval)
            try:
                await asyncio.to_thread(ping)
            except Exception as e:
                if down_since is None:
                    down_since = time.monotonic()
                    first = str(getattr(e, "orig", None) or e).strip().splitlines()[:1]
                    self.log.warning(
                        "The hub's database %s does not answer (%s: %s): logins, spawns and "
                        "the API fail until it is back; running servers keep running",
                        where, type(getattr(e, "orig", None) or e).__name__,
                        mask_url(first[0]) if first else "")
            else:
                if down_since is not None:
                    self.log.warning("The hub's database %s answers again, after %.0f s",
                                     where, time.monotonic() - down_since)
                down_since = None

    async def watch_routes(self):
        """Once the hub has started (as JupyterHub's own route check waits
        for), look at the proxy's routes every check_routes_interval seconds
        and put back what is missing: check_routes writes only differences."""
        await self.app._start_future
        failing = False
        while True:
            await asyncio.sleep(self.check_routes_interval)
            try:
                routes = await self.get_all_routes()
                await self.check_routes(self.app.users, self.app._service_map, routes)
            except Exception as e:
                if not failing:  # once per outage, not every interval
                    self.log.warning("Cannot check the proxy's routes at %s: %s",
                                     self.api_url, e)
                failing = True
            else:
                if failing:
                    self.log.info("The proxy at %s answers again; routes checked",
                                  self.api_url)
                failing = False

    async def get_all_routes(self):
        """The hub's first request to an external proxy, at start-up: wait
        for the proxy's API to listen (the proxy starts after its TLS files
        are written, or simply later than the hub) rather than exit."""
        deadline = time.monotonic() + self.proxy_wait
        waiting = False
        while True:
            try:
                return await super().get_all_routes()
            # refused, or the name is not there yet (JupyterHub retries a
            # refused request for 30 s itself, then raises TimeoutError, an
            # OSError too)
            except OSError as e:
                if self.should_start or time.monotonic() > deadline:
                    raise
                if not waiting:
                    waiting = True
                    self.log.info("Waiting for the proxy's API at %s (%s)", self.api_url, e)
                await asyncio.sleep(0.5)


# --------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------

# Lowercase letters, digits, '.', '_' and '-', starting with a letter or
# digit, at most 32 characters: names that stay valid and distinct as docker
# service, volume and directory names. JupyterHub lowercases names first.
DEFAULT_USERNAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,31}"


def anchored(pattern):
    return rf"(?:{pattern})\Z"


def printable_name(name):
    """No control, format (invisible, bidirectional), separator or unassigned
    characters, whatever AUTH_USERNAME_PATTERN allows: they reach HTML
    attributes and logs, and escapism writes the bytes 0x00-0x0f with one hex
    digit, so "\\x01" + "2" and "\\x12" would share one docker name."""
    return name.isprintable()


# bcrypt hashes at most 72 bytes; bcrypt 5 raises ValueError beyond.
PASSWORD_MAX_BYTES = 72


def password_too_long(password):
    return len(password.encode("utf-8", "surrogatepass")) > PASSWORD_MAX_BYTES


def too_long_message(password, whose="Your"):
    return (f"{whose} password is {len(password.encode('utf-8', 'surrogatepass'))} bytes long "
            f"in UTF-8: passwords may have at most {PASSWORD_MAX_BYTES} bytes. "
            "Please choose a shorter one.")


# (password, its bcrypt hash) of the sign-up this request is making: hashed
# in the bcrypt threads before NativeAuthenticator's handler runs, and taken
# by SwarmNativeAuthenticator.create_user.
SIGN_UP_HASH = contextvars.ContextVar("sign_up_hash", default=None)


class RuledSignUpHandler(SignUpHandler):
    """Sign-up that says which rule a refused user name or password breaks,
    with the new password hashed off the event loop."""

    async def post(self):
        """NativeAuthenticator's sign-up. A sign-up that passes its cheap
        checks first has its password hashed in the authenticator's bcrypt
        threads: about 0.25 s of CPU each, which on the event loop stalls
        every request of the hub (its health check too) while a class signs
        up. A refused sign-up costs no hash."""
        auth = self.authenticator
        name, password, confirmation = (
            self.get_body_argument(k, "", strip=False)
            for k in ("username", "signup_password", "signup_password_confirmation"))
        normalized = auth.normalize_username(name)
        token = None
        if (auth.enable_signup and not auth.recaptcha_key and password == confirmation
                and auth.validate_username(normalized) and not auth.user_exists(normalized)
                and auth.is_password_strong(password)):
            token = SIGN_UP_HASH.set((password, await auth.hash_password(password)))
        try:
            return await super().post()
        finally:
            if token is not None:
                SIGN_UP_HASH.reset(token)

    def get_result_message(self, user, human, taken, confirmation_matches, is_admin):
        alert, message = super().get_result_message(
            user, human, taken, confirmation_matches, is_admin)
        if user is not None or not human or taken or not confirmation_matches:
            return alert, message
        auth = self.authenticator
        name = self.get_body_argument("username", "", strip=False)
        password = self.get_body_argument("signup_password", "", strip=False)
        normalized = auth.normalize_username(name)
        if not printable_name(normalized):
            message = (f"The user name {name!r} is not allowed: it contains control or "
                       "invisible characters.")
        elif not auth.validate_username(normalized):
            message = (f"The user name {name!r} is not allowed: use lowercase letters, "
                       "digits, '.', '_' and '-', starting with a letter or digit, "
                       "at most 32 characters."
                       if auth.username_pattern == anchored(DEFAULT_USERNAME_PATTERN) else
                       f"The user name {name!r} is not allowed: it must match "
                       f"{auth.username_pattern}.")
        elif auth.server_name_taken(normalized):
            message = (f"The user name {name!r} is not allowed: its server would have "
                       "the same name as another user's. Please choose another name.")
        elif password_too_long(password):
            message = too_long_message(password)
        return alert, message


class BoundedChangePasswordHandler(ChangePasswordHandler):
    """Change Password: a password over bcrypt's 72 bytes gets a message,
    not HTTP 500 (NativeAuthenticator hashes the current one unchecked)."""

    @web.authenticated
    async def post(self):
        old = self.get_body_argument("old_password", "", strip=False)
        new = self.get_body_argument("new_password", "", strip=False)
        if not (password_too_long(old) or password_too_long(new)):
            return await super().post()
        user = await self.get_current_user()
        # no stored password is longer: a long current one cannot be right
        message = ("Your current password was incorrect. Please try again."
                   if password_too_long(old) else too_long_message(new, "Your new"))
        self.finish(await self.render_template(
            "change-password.html", user_name=user.name, result_message=message,
            alert="alert-danger"))


class BoundedChangePasswordAdminHandler(ChangePasswordAdminHandler):
    """An admin's Change Password for another user, likewise bounded."""

    @admin_users_scope
    async def post(self, user_name):
        new = self.get_body_argument("new_password", "", strip=False)
        if not password_too_long(new) or not self.authenticator.user_exists(user_name):
            return await super().post(user_name)
        self.finish(await self.render_template(
            "change-password-admin.html", user_name=user_name,
            result_message=too_long_message(new, "The new"), alert="alert-danger"))


# The image's own templates, before NativeAuthenticator's (config)
SWARM_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


class PostOnly:
    """A NativeAuthenticator handler that changes state on GET, made to
    change it on POST only, with the XSRF token JupyterHub checks on every
    POST (the buttons of templates/authorization-area.html). JupyterHub
    checks no token on a GET: a link anywhere could approve or discard an
    account once an admin followed it. A GET now only shows the page."""

    @admin_users_scope
    async def get(self, name):
        self.redirect(self.hub.base_url + "authorize")

    @admin_users_scope
    async def post(self, name):
        await super().get(name)  # what NativeAuthenticator's GET did


class PostToggleAuthorizationHandler(PostOnly, ToggleAuthorizationHandler):
    """Approve or unapprove a user: POST /hub/authorize/<name>."""


class PostDiscardHandler(PostOnly, DiscardHandler):
    """Discard a pending user: POST /hub/discard/<name>."""


class CheckedLoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page, checking the password once.

    NativeAuthenticator's own post() hashes a wrong password a second time
    to tell "not approved yet" from "wrong password", and times the login
    with handler.statsd; here authenticate() notes what it found on the
    handler, and post() reads that."""

    password_valid = False  # set by SwarmNativeAuthenticator.authenticate
    account_pending = False

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        user = await self.login_user(data)
        if user:
            # register current user for subsequent requests to user
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        username = data.get("username", "")
        error = "Invalid username or password."
        if self.password_valid and self.account_pending:
            error = f"User {username} has not been authorized by an administrator yet."
        self.finish(await self._render(login_error=error, username=username))


class SwarmNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose admin accounts exist from the start (with
    admin_password, or a generated one in admin_password_file), so nobody
    can claim an admin name by signing up."""

    admin_password = Unicode(None, allow_none=True, config=True, help="""
        If set, every admin_users account is created (or its password reset)
        and approved when the hub starts. (AUTH_ADMIN_PASSWORD)""")

    admin_password_file = Unicode("/data/admin_password", config=True, help="""
        Without admin_password: at start, every admin_users account that does
        not exist yet is created, approved, with a generated password written
        here (mode 0600, on the hub's data volume; the log says where, never
        the password). Existing accounts are never touched. One line per
        account: "<name> <password>".""")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.admin_password:
            self.bootstrap_admins(self.admin_password)
        else:
            self.create_missing_admins()

    def create_missing_admins(self):
        """Nobody may claim an admin name by signing up: an admin account
        that does not exist is created now, with a generated password that
        only someone with access to the hub's container can read (as Jenkins
        and Grafana hand out their first admin password)."""
        import bcrypt

        names = sorted({self.normalize_username(n) for n in self.admin_users})
        missing = [n for n in names if self.get_user(n) is None]
        if not missing:
            return
        passwords = {name: secrets.token_urlsafe(18) for name in missing}
        path = self.admin_password_file
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                os.fchmod(f.fileno(), 0o600)
                if f.tell() == 0:
                    f.write("# Generated passwords of admin accounts (name password); log in, "
                            "change them (Change Password), then delete this file.\n")
                f.writelines(f"{name} {password}\n" for name, password in passwords.items())
            written = True
        except OSError as e:
            written = False
            self.log.error("Could not write the generated admin password(s) to %s (%s): set "
                           "AUTH_ADMIN_PASSWORD or AUTH_ADMIN_PASSWORD_FILE to set them", path,
                           e.strerror or e)
        for name, password in passwords.items():
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
        self.db.commit()
        if written:
            self.log.warning(
                "Created admin account(s) %s with a generated password, in %s (readable by the "
                "hub only): docker exec <the hub's container> cat %s", ", ".join(missing),
                path, path)

    # bcrypt takes about 0.25 s of CPU per password: off the event loop, in
    # threads (bcrypt releases the GIL), so a burst of logins does not stall
    # every other request of the hub.
    _hashing = ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                  thread_name_prefix="bcrypt")

    async def authenticate(self, handler, data):
        """NativeAuthenticator's check, hashing the password once and in a
        thread, and not at all for a name that is locked out."""
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user:
            return None
        if self.allowed_failed_logins and self.is_blocked(username):
            return None
        password = data["password"]
        if password_too_long(password):  # no stored password is; bcrypt 5 raises
            valid = False
        else:
            loop = asyncio.get_running_loop()
            valid = await loop.run_in_executor(self._hashing, user.is_valid_password, password)
        if isinstance(handler, CheckedLoginHandler):
            handler.password_valid, handler.account_pending = valid, not user.is_authorized
        checks = [user.is_authorized, valid]
        if user.has_2fa:
            checks.append(user.is_valid_token(data.get("2fa")))
        if all(checks):
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        return None

    def can_try_to_login_again(self, username):
        """NativeAuthenticator compares timedelta.seconds, which drops whole
        days: a lock-out of a day or more never ended, and a lock from a day
        ago could still hold. Compare the whole time elapsed."""
        attempts = self.login_attempts.get(username)
        if not attempts:
            return True
        elapsed = (datetime.now() - attempts["time"]).total_seconds()
        return elapsed > self.seconds_before_next_try

    def validate_username(self, username):
        """NativeAuthenticator's and AUTH_USERNAME_PATTERN's rules, and never
        a control or invisible character, whatever the pattern allows."""
        return printable_name(username) and super().validate_username(username)

    def is_password_strong(self, password):
        """Also at most bcrypt's 72 bytes (sign-up and password changes)."""
        return not password_too_long(password) and super().is_password_strong(password)

    def server_name_taken(self, username):
        """The existing user whose server (swarm service, and with it the
        volume and directory) name `username` would share, or None: names
        that differ can escape alike under a relaxed AUTH_USERNAME_PATTERN."""
        from jupyterhub import orm

        prefix = self.config.SwarmUserSpawner.get("prefix", SwarmUserSpawner.prefix.default_value)

        def server(name):
            return service_name(prefix, escape_username(name))

        mine = server(username)
        names = {info.username for info in UserInfo.all_users(self.db)}
        names.update(name for (name,) in self.db.query(orm.User.name))
        return next((n for n in sorted(names) if n != username and server(n) == mine), None)

    async def hash_password(self, password):
        """bcrypt's hash of `password`, made in the bcrypt threads."""
        import bcrypt

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hashing, bcrypt.hashpw, password.encode(),
                                          bcrypt.gensalt())

    def create_user(self, username, password, **kwargs):
        if self.server_name_taken(self.normalize_username(username)):
            return None
        made = SIGN_UP_HASH.get()
        if made is None or made[0] != password:
            return super().create_user(username, password, **kwargs)
        return self.create_hashed_user(username, password, made[1], **kwargs)

    def create_hashed_user(self, username, password, hashed, **kwargs):
        """NativeAuthenticator 1.3.0's create_user with the hash made
        beforehand (RuledSignUpHandler): the same checks, in the same order,
        and the same account."""
        username = self.normalize_username(username)
        if (self.user_exists(username) or not self.validate_username(username)
                or not self.is_password_strong(password) or not self.enable_signup):
            return None
        infos = {"username": username, "password": hashed, **kwargs}
        pre_authorized = self.open_signup or username in self.get_authed_users()
        if pre_authorized:
            infos["is_authorized"] = True
        try:
            user_info = UserInfo(**infos)
        except AssertionError:  # UserInfo's checks (the e-mail address)
            return None
        if self.allow_self_approval_for and not pre_authorized:
            if re.match(self.allow_self_approval_for, user_info.email):
                self.send_approval_email(user_info.email,
                                         self.generate_approval_url(username))
                user_info.login_email_sent = True
        self.db.add(user_info)
        self.db.commit()
        return user_info

    def get_handlers(self, app):
        replaced = {SignUpHandler: RuledSignUpHandler, NativeLoginHandler: CheckedLoginHandler,
                    ChangePasswordHandler: BoundedChangePasswordHandler,
                    ChangePasswordAdminHandler: BoundedChangePasswordAdminHandler,
                    ToggleAuthorizationHandler: PostToggleAuthorizationHandler,
                    DiscardHandler: PostDiscardHandler}
        return [(path, replaced.get(handler, handler))
                for path, handler in super().get_handlers(app)] + [
            (r"/cluster", ClusterHandler),
            # before JupyterHub's own handlers of these paths (init_handlers)
            (r"/metrics$", SwarmMetricsHandler),
            (r"/api/metrics$", SwarmMetricsHandler),
        ]

    def bootstrap_admins(self, password):
        import bcrypt

        for name in sorted(self.admin_users):
            name = self.normalize_username(name)
            info = self.get_user(name)
            if info is not None and info.is_valid_password(password) and info.is_authorized:
                continue
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            if info is None:
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
                self.log.info("Created admin account %r", name)
            else:
                info.password, info.is_authorized = hashed, True
                self.log.info("Reset the password of admin account %r", name)
        self.db.commit()


# --------------------------------------------------------------------------
# The cluster page for admins (/hub/cluster): nodes and the servers on them
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerRow:
    user: str  # "" for a user service this hub does not know
    server: str  # the named server's name; "" for the default one
    service: str
    image: str
    state: str  # swarm's task state
    age: float  # seconds since the service was created


@dataclass(frozen=True)
class NodeRow:
    hostname: str
    role: str
    availability: str
    state: str
    platform: str  # os/architecture
    labels: tuple  # ((key, value), ...), sorted
    cpus: float  # what the node advertises
    memory: int  # bytes
    cpus_reserved: float  # what its tasks reserve
    memory_reserved: int
    generic: tuple  # ((kind, advertised, reserved), ...): GPUs and the like
    servers: tuple  # ServerRow, ...


def _generic(resources):
    """{kind: count} of a list of swarm GenericResources (discrete ones
    count their value, named ones one each)."""
    counts = {}
    for r in resources or ():
        if "DiscreteResourceSpec" in r:
            spec = r["DiscreteResourceSpec"]
            counts[spec["Kind"]] = counts.get(spec["Kind"], 0) + int(spec.get("Value", 0))
        elif "NamedResourceSpec" in r:
            kind = r["NamedResourceSpec"]["Kind"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _created_at(stamp):
    """Seconds since the epoch of docker's RFC 3339 time (nanoseconds cut)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp.replace("Z", "+00:00"))
    return datetime.fromisoformat(stamp).timestamp()


def cluster_rows(nodes, services, tasks, owners, now, prefix="jupyter-"):
    """The cluster page's rows from docker's node, service and task lists:
    (NodeRow per node, by hostname; ServerRow of user servers not on a node
    yet). A task counts while swarm wants it running; `owners` maps a
    service's name to its (user, server name); other services whose name
    starts with `prefix` (the spawner's) are shown without a user. Pure."""
    by_id = {s["ID"]: s for s in services}
    live = [t for t in tasks if t.get("DesiredState") == "running"]
    placed, waiting = {}, []
    for t in live:
        service = by_id.get(t.get("ServiceID"))
        if service is None:
            continue
        name = service["Spec"]["Name"]
        if name in owners or name.startswith(prefix):
            user, server = owners.get(name, ("", ""))
            row = ServerRow(user, server, name, t["Spec"]["ContainerSpec"]["Image"].split("@")[0],
                            t["Status"]["State"], max(0.0, now - _created_at(service["CreatedAt"])))
            if t.get("NodeID"):
                placed.setdefault(t["NodeID"], []).append(row)
            else:
                waiting.append(row)
    rows = []
    for n in nodes:
        desc, spec = n.get("Description", {}), n.get("Spec", {})
        res = desc.get("Resources", {})
        mine = [t for t in live if t.get("NodeID") == n["ID"]]
        reserved = [t["Spec"].get("Resources", {}).get("Reservations", {}) for t in mine]
        advertised, used = _generic(res.get("GenericResources")), {}
        for r in reserved:
            for kind, count in _generic(r.get("GenericResources")).items():
                used[kind] = used.get(kind, 0) + count
        platform = desc.get("Platform", {})
        rows.append(NodeRow(
            hostname=desc.get("Hostname", n["ID"]),
            role=spec.get("Role", ""), availability=spec.get("Availability", ""),
            state=n.get("Status", {}).get("State", ""),
            platform=f"{platform.get('OS', '?')}/{platform.get('Architecture', '?')}",
            labels=tuple(sorted(spec.get("Labels", {}).items())),
            cpus=res.get("NanoCPUs", 0) / 1e9, memory=res.get("MemoryBytes", 0),
            cpus_reserved=sum(r.get("NanoCPUs", 0) for r in reserved) / 1e9,
            memory_reserved=sum(r.get("MemoryBytes", 0) for r in reserved),
            generic=tuple((k, advertised.get(k, 0), used.get(k, 0))
                          for k in sorted(set(advertised) | set(used))),
            servers=tuple(sorted(placed.get(n["ID"], ()), key=lambda r: r.service))))
    return tuple(sorted(rows, key=lambda r: r.hostname)), tuple(waiting)


class ClusterView:
    """Docker's node, service and task lists, read at most every `max_age`
    seconds however many admins look: one read at a time, in a thread, so
    the hub's event loop never waits for the engine."""

    def __init__(self, max_age=5.0, client=None):
        self.max_age = max_age
        self._client = client
        self._lock = asyncio.Lock()
        self._read = None  # (nodes, services, tasks, monotonic time, wall time)
        self.reads = 0  # how often the engine was asked (the tests look)

    def _fetch(self):
        if self._client is None:
            self._client = docker_py.APIClient(version="auto", **docker_py.utils.kwargs_from_env())
        c = self._client
        return c.nodes(), c.services(), c.tasks(filters={"desired-state": "running"})

    async def get(self):
        async with self._lock:
            if self._read is None or time.monotonic() - self._read[3] >= self.max_age:
                nodes, services, tasks = await asyncio.to_thread(self._fetch)
                self.reads += 1
                self._read = (nodes, services, tasks, time.monotonic(), time.time())
            return self._read


CLUSTER = ClusterView()


def hub_owners(handler):
    """{service name: (user, server name)} of the servers the hub runs."""
    found = {}
    for orm_spawner in handler.db.query(orm.Spawner).filter(orm.Spawner.server_id.isnot(None)):
        user = handler.users[orm_spawner.user]
        spawner = user.spawners[orm_spawner.name]
        found[spawner.object_name] = (user.name, orm_spawner.name)
    return found


class ClusterHandler(BaseHandler):
    """/hub/cluster: every node of the swarm and the user servers on it, for
    admins (403 for everyone else)."""

    def owners(self):
        return hub_owners(self)

    @web.authenticated
    async def get(self):
        if not self.current_user.admin:
            raise web.HTTPError(403, "The cluster page is for admins.")
        error, nodes, waiting, read_at = None, (), (), None
        try:
            node_list, services, tasks, _, read_at = await CLUSTER.get()
            nodes, waiting = cluster_rows(node_list, services, tasks, self.owners(), time.time())
        except Exception as e:  # the engine is away: say so on the page
            self.log.warning("The cluster page could not read the swarm: %s", e)
            error = f"Could not read the swarm from the engine: {type(e).__name__}"
        html = await self.render_template(
            "cluster.html", nodes=nodes, waiting=waiting, error=error,
            read_at=datetime.fromtimestamp(read_at).strftime("%H:%M:%S") if read_at else None,
            max_age=CLUSTER.max_age)
        self.finish(html)


# -- the swarm's nodes in /hub/metrics ----------------------------------------

NODE_GPUS = Gauge(
    "jupyterhub_swarm_node_gpus",
    "Generic resources (GPUs) of a swarm node: what it advertises and what "
    "the tasks on it reserve", ["node", "kind", "state"])
NODE_USER_SERVERS = Gauge(
    "jupyterhub_swarm_node_user_servers",
    "User servers whose task is on this node (swarm wants it running)", ["node"])
USER_SERVERS_WAITING = Gauge(
    "jupyterhub_swarm_user_servers_waiting",
    "User servers whose task has no node yet")
CLUSTER_UP = Gauge(
    "jupyterhub_swarm_cluster_up",
    "1 when the last read of the swarm's nodes, services and tasks worked; "
    "0 when it failed (the node series are then absent)")


def node_samples(nodes, waiting):
    """The per-node series of cluster_rows' rows: ({(node, kind, state):
    count}, {node: user servers}, servers waiting). Nodes are named by
    hostname; two nodes of one hostname add up. Pure."""
    gpus, servers = {}, {}
    for n in nodes:
        servers[n.hostname] = servers.get(n.hostname, 0) + len(n.servers)
        for kind, advertised, reserved in n.generic:
            for state, count in (("advertised", advertised), ("reserved", reserved)):
                key = (n.hostname, kind, state)
                gpus[key] = gpus.get(key, 0) + count
    return gpus, servers, len(waiting)


def set_node_metrics(samples):
    """Replace the node series with `samples` (node_samples), or with none
    (None: the swarm could not be read). No await in here: a scrape, on the
    same event loop, never sees half of it."""
    NODE_GPUS.clear()
    NODE_USER_SERVERS.clear()
    if samples is None:
        CLUSTER_UP.set(0)
        return
    gpus, servers, waiting = samples
    for labels, count in gpus.items():
        NODE_GPUS.labels(*labels).set(count)
    for node, count in servers.items():
        NODE_USER_SERVERS.labels(node).set(count)
    USER_SERVERS_WAITING.set(waiting)
    CLUSTER_UP.set(1)


class SwarmMetricsHandler(MetricsHandler):
    """JupyterHub's /hub/metrics (and /hub/api/metrics), with the node
    series read anew from the swarm first: CLUSTER's cache (at most one
    read every few seconds, in a thread) however often Prometheus scrapes.
    Authentication as JupyterHub's: the read:metrics scope."""

    @metrics_authentication
    async def get(self):
        try:
            node_list, services, tasks, _, _ = await CLUSTER.get()
            nodes, waiting = cluster_rows(node_list, services, tasks, hub_owners(self),
                                          time.time())
            samples = node_samples(nodes, waiting)
        except Exception as e:
            self.log.warning("/hub/metrics could not read the swarm: %s", e)
            samples = None
        set_node_metrics(samples)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(REGISTRY))


# --------------------------------------------------------------------------
# The operator's own configuration files, run after the image's settings
# --------------------------------------------------------------------------


def run_config_file(c, path, variable):
    """Run the Python file `path` with the configuration `c` in its
    namespace, as `c` and `get_config()` (what a jupyterhub_config.py, z2jh's
    hub.extraConfig and TLJH's jupyterhub_config.d files see). Each file gets
    a namespace of its own. Any error, a syntax error included, becomes a
    ConfigError naming `variable`, the file, the line and the error, so the
    hub stops with it before it serves or contacts anything."""
    def stop(where, error):
        raise ConfigError(variable, path, "", problem=(
            f"{variable}: the configuration file {path} failed{where}: {error} "
            "(fix or remove the file)"))

    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        stop("", f"cannot read it ({e.strerror})")
    namespace = {"c": c, "get_config": lambda: c, "__file__": path,
                 "__name__": "jupyterhub_config_d"}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SyntaxError as e:  # in the file, or in a module it imports
        place = "" if e.filename == path else f"{e.filename}, "
        stop(f" at {place}line {e.lineno}", f"{type(e).__name__}: {e.msg}")
    except Exception as e:
        # the innermost line of the file itself on the way to the error
        lines = [n for frame, n in traceback.walk_tb(e.__traceback__)
                 if frame.f_code.co_filename == path]
        where = f" at line {lines[-1]}" if lines else ""
        stop(where, f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------
# The hub database, checked before the hub starts
# --------------------------------------------------------------------------

# The hub's database calls run on its event loop: a database host that stops
# answering must not freeze it. Connecting gives up after 10 s; with
# PostgreSQL a connection whose packets go unanswered is dropped after 60 s
# (tcp_user_timeout) and an idle one found dead within a minute
# (keepalives); with MySQL/MariaDB reads and writes give up after 30 s.
DB_CONNECT_ARGS = {
    "postgresql": {"connect_timeout": 10, "tcp_user_timeout": 60000, "keepalives": 1,
                   "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3},
    "mysql": {"connect_timeout": 10, "read_timeout": 30, "write_timeout": 30},
}


def db_connect_args(url):
    """The driver's timeouts for the database at `url` (DB_CONNECT_ARGS)."""
    return dict(next((args for prefix, args in DB_CONNECT_ARGS.items()
                      if url.startswith(prefix)), {}))


DB_CONNECT_WAIT = 30  # seconds to wait for a database that is still starting
_AUTH_FAILURES = ("password authentication failed", "access denied", "no password supplied")


def check_database(url, upgrade, wait=DB_CONNECT_WAIT):
    """Connect once and compare schema versions, so a wrong URL, password or
    schema stops the hub with a message naming the variable to change."""
    from jupyterhub import orm
    from sqlalchemy import create_engine

    shown = mask_url(url)
    credentials = split_credentials(url)
    password = credentials[1].partition(":")[2] if credentials else ""
    args = {} if url.startswith("sqlite") else {"connect_timeout": 5}
    engine = create_engine(url, connect_args=args)
    deadline = time.monotonic() + wait
    waiting = False
    try:
        while True:
            try:
                with engine.connect():
                    break
            except Exception as e:
                reason = str(getattr(e, "orig", e)).strip().splitlines()[0]
                for secret in {password, unquote(password)} - {""}:
                    reason = reason.replace(secret, "***")
                final = any(f in reason.lower() for f in _AUTH_FAILURES)
                if final or time.monotonic() > deadline:
                    raise ConfigError("HUB_DB_URL", url, "", problem=(
                        f"HUB_DB_URL={shown!r}: cannot connect to the database: {reason}")) from None
                if not waiting:  # say why the hub is silent meanwhile
                    print(f"jupyterhub_config: waiting up to {wait}s for the database at "
                          f"HUB_DB_URL={shown!r}: {reason}", flush=True)
                    waiting = True
                time.sleep(2)
        if not upgrade:
            try:
                orm.check_db_revision(engine)
            except orm.DatabaseSchemaMismatch as e:
                raise ConfigError("HUB_UPGRADE_DB", "", "", problem=(
                    f"the database at HUB_DB_URL={shown!r} was made by an older JupyterHub "
                    f"({str(e).splitlines()[0]}). Back it up, then start the hub once with "
                    "HUB_UPGRADE_DB=true to upgrade it (SQLite files are copied to a "
                    "backup next to the database first).")) from None
    finally:
        engine.dispose()


def running_hub():
    """True when the configuration is loaded by a starting `jupyterhub`, not
    by tests or the check command."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        return False
    return JupyterHub.initialized() and not JupyterHub.instance().generate_config


# --------------------------------------------------------------------------
# The configuration check: python3 jupyterhub_config.py [username ...]
# --------------------------------------------------------------------------


def _shown(value, secret, url):
    if value is None or value == "":
        return "-"
    if url:
        return mask_url(str(value))
    if secret:
        return "<hidden>"
    if isinstance(value, (tuple, list, set, dict)):
        return ",".join(map(str, value)) or "-"
    if not isinstance(value, (str, int, float)):  # parsed defaults
        return "-"
    return str(value)


def check_main(argv, c, report, secret_names, out=sys.stdout):
    """Print each variable's effective value and where it came from (report:
    name -> (value, source); values of secret_names hidden, HUB_DB_URL
    masked), then what each user named in argv would get from the
    configuration `c`. Nothing is started."""
    print("variable | value | source", file=out)
    for name in sorted(report):
        value, source = report[name]
        shown = _shown(value, name in secret_names, name == "HUB_DB_URL")
        print(f"{name} | {shown} | {source}", file=out)
    sp = c.SwarmUserSpawner
    storage, placement = sp.storage, sp.placement
    pattern = re.compile(c.Authenticator.username_pattern)
    for username in argv:
        name = username.lower()
        print(f"\nuser {name}:", file=out)
        if not pattern.fullmatch(name):
            print(f"  refused: does not match AUTH_USERNAME_PATTERN ({pattern.pattern})", file=out)
            continue
        if not printable_name(name):
            print("  refused: control or invisible characters", file=out)
            continue
        escaped = escape_username(name)
        plan = plan_for_user(name, sp.image, sp.base_constraints, sp.default_gpu, sp.suffix_rules,
                             unchosen_profile(name, sp))
        mount = storage_mount(storage, escaped)
        options = mount.get("driver_config", {}).get("options", {})
        if storage.type == "cifs" and options:
            options["o"] = f"addr={storage.host},<SPAWNER_PERSISTENCE_CIFS_OPTS hidden>"
        gpu = (f"{plan.gpu.count} x NVIDIA-GPU" if plan.gpu.count else
               f"NVIDIA_VISIBLE_DEVICES={plan.gpu.visible}" if plan.gpu.visible else
               "none (NVIDIA_VISIBLE_DEVICES=void)")
        rows = [
            ("service", service_name("jupyter", escaped)),
            ("image", plan.image),
            ("constraints", ", ".join(plan.constraints) or "none"),
            ("preferences", ", ".join(f"{a}:{b}" for a, b in placement.preferences) or "none"),
            ("platforms", ", ".join(f"{a}:{b}" for a, b in placement.platforms) or "none"),
            ("gpus", gpu),
            ("volume", f"{mount['source']} -> {mount['target']}"),
        ]
        if options:
            rows.append(("volume options", ", ".join(f"{k}={v}" for k, v in options.items())))
        directory = user_directory(storage, escaped)
        if directory:
            share = (f"//{storage.host}{share_root(storage)}" if storage.type == "cifs"
                     else f"{storage.host}:{share_root(storage)}")
            rows.append(("share root in the hub", f"{share} -> {storage.mkdir_root} "
                         "(docker-compose.%s.yml)" % ("cifs" if storage.type == "cifs" else "nfs")))
            rows.append(("directory made by the hub", directory))
        for key, value in rows:
            print(f"  {key}: {value}", file=out)
        _print_profiles(name, sp, out)
    return 0


def unchosen_profile(name, sp):
    """The profile `name` gets without choosing, if in no group (the check
    cannot know groups)."""
    everyone = profiles_for(name, (), sp.profiles, sp.suffix_rules)
    return choose_profile(everyone, sp.default_profile, {}) if everyone else None


def _print_profiles(name, sp, out):
    """The profiles `name` may choose and what each gives. The check has no
    database: a profile limited to groups is listed with its groups."""
    if not sp.profiles:
        return
    if (user_suffix(name) or "") in sp.suffix_rules:
        print(f"  profiles: none (the suffix rule -{user_suffix(name)} applies, no form)",
              file=out)
        return
    default = unchosen_profile(name, sp)
    print("  profiles (the spawn page's choices; above: what a user in no group gets "
          f"without choosing, {'profile ' + default.key if default else 'no profile'}):",
          file=out)
    for p in sp.profiles:
        plan = plan_for_user(name, sp.image, sp.base_constraints, sp.default_gpu,
                             sp.suffix_rules, p)
        marks = []
        if p.key == sp.default_profile:  # SPAWNER_PROFILE_DEFAULT, or the first
            marks.append("default")
        marks.append(f"only for members of group {', '.join(p.groups)}" if p.groups
                     else "for everyone")
        print(f"    {p.key} ({p.title}; {'; '.join(marks)}): image {plan.image}; "
              f"constraints {', '.join(plan.constraints) or 'none'}; "
              f"gpus {gpu_words(plan.gpu)}; runs {where_words(plan, sp.placement)}", file=out)
