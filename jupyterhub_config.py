"""JupyterHub on Docker Swarm, configured from environment variables.

Every variable documented in README.md is read here, in the README's order:
proxy, hub, spawner, auth. Readers at the top turn strings into typed values
and raise ConfigError naming the variable, the value and the accepted forms.
Rule parsers (mounts, GPUs, placement, suffix rules, environment pairs) are
pure functions, so tests can call them directly. What depends on the user is
computed fresh for every spawn by SwarmUserSpawner; nothing shared is mutated.
"""

import asyncio
import hashlib
import ipaddress
import os
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# --------------------------------------------------------------------------
# Typed readers
# --------------------------------------------------------------------------


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


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}

# Secret-bearing variables also accept <NAME>_FILE, a file holding the value
# (docker secrets: /run/secrets/<name>), as the official database images do.
SECRET_FILES = {
    "CONFIGPROXY_AUTH_TOKEN": "CONFIGPROXY_AUTH_TOKEN_FILE",
    "HUB_DB_URL": "HUB_DB_URL_FILE",
    "SPAWNER_PERSISTENCE_CIFS_OPTS": "SPAWNER_PERSISTENCE_CIFS_OPTS_FILE",
    "AUTH_ADMIN_PASSWORD": "AUTH_ADMIN_PASSWORD_FILE",
}


class Env:
    """Reads variables from a mapping (os.environ in the hub).

    Empty strings count as unset, as docker-compose writes `VAR: ""` for
    variables an operator left blank. Every read is recorded in `report`
    (name -> (effective value, source)) for the configuration check.
    """

    def __init__(self, environ):
        self.environ = environ
        self.report = {}

    def _get(self, name):
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def raw(self, name):
        value, source = self._get(name), "env"
        file_var = SECRET_FILES.get(name)
        path = self._get(file_var) if file_var else None
        if path is not None:
            if value is not None:
                raise ConfigError(file_var, path, f"either {name} or {file_var}, not both")
            try:
                with open(path, encoding="utf-8") as f:
                    value, source = f.read().strip() or None, "file " + path
            except (OSError, ValueError, UnicodeDecodeError) as e:
                why = getattr(e, "strerror", None) or "not a readable text file"
                raise ConfigError(file_var, path, f"a readable file ({why})") from None
        self.report[name] = (value, source if value is not None else "default")
        return value

    def record(self, name, value):
        """Note the effective value (after defaults) of a variable read."""
        source = self.report.get(name, (None, "default"))[1]
        self.report[name] = (value, source)
        return value

    def str(self, name, default=None, required_because=None, secret=False):
        value = self.raw(name)
        if value is None:
            if required_because:
                raise ConfigError(name, "", f"a value ({required_because})", secret)
            return self.record(name, default)
        return value

    def bool(self, name, default):
        value = self.raw(name)
        if value is None:
            return self.record(name, default)
        word = value.lower()
        if word in TRUE_WORDS:
            return self.record(name, True)
        if word in FALSE_WORDS:
            return self.record(name, False)
        raise ConfigError(name, value, "true/false, 1/0, yes/no or on/off")

    def int(self, name, default, minimum=None, maximum=None):
        value = self.raw(name)
        if value is None:
            return self.record(name, default)
        accepted = "an integer" + _range_text(minimum, maximum)
        try:
            number = int(value, 10)
        except ValueError:
            raise ConfigError(name, value, accepted) from None
        if (minimum is not None and number < minimum) or (
            maximum is not None and number > maximum
        ):
            raise ConfigError(name, value, accepted)
        return self.record(name, number)

    def float(self, name, default, minimum=0.0):
        value = self.raw(name)
        if value is None:
            return self.record(name, default)
        accepted = f"a number >= {minimum:g}"
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, value, accepted) from None
        if not (number >= minimum) or number in (float("inf"),):
            raise ConfigError(name, value, accepted)
        return self.record(name, number)

    def choice(self, name, default, choices):
        value = self.raw(name)
        if value is None:
            return self.record(name, default)
        if value.lower() not in choices:
            raise ConfigError(name, value, "one of " + ", ".join(choices))
        return self.record(name, value.lower())

    def port(self, name, default):
        return self.int(name, default, minimum=1, maximum=65535)

    def bytes(self, name, default):
        value = self.raw(name) or default
        try:
            return self.record(name, parse_bytes(value))
        except ValueError:
            raise ConfigError(
                name, value, "a size like 512M, 4G or a number of bytes"
            ) from None

    def parsed(self, name, parser, accepted, default=None, secret=False):
        """Read a structured value with a pure parser raising ValueError."""
        value = self.raw(name)
        if value is None:
            return self.record(name, default)
        try:
            parsed = parser(value)
        except ValueError as e:
            raise ConfigError(name, value, f"{accepted} ({e})", secret) from None
        self.record(name, value)  # the text as given reads best in the check
        return parsed


def _range_text(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return ""


# --------------------------------------------------------------------------
# Pure parsers for structured values
# --------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(text):
    """'4G' -> 4294967296. Units K/M/G/T are powers of 1024, like docker's."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:ib?|b)?", text.strip().lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if number < 1 and number != 0:
        raise ValueError(f"size below one byte: {text!r}")
    return int(number)


def split_list(text, sep):
    """Split on sep, strip items, drop empty ones (trailing separators)."""
    return [item.strip() for item in text.split(sep) if item.strip()]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env_pairs(text):
    """'A:1;B:http://x' -> {'A': '1', 'B': 'http://x'}: split on the first ':'."""
    result = {}
    for item in split_list(text, ";"):
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"bad pair {item!r}")
        result[name] = value.strip()
    return result


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


GPU_FORMS = "a positive integer, 0, -1, all, or device_id=<id>[,<id>...]"


def parse_gpus(text):
    text = text.strip()
    if text in ("", "0"):
        return Gpu()
    if text.lower() in ("all", "-1"):
        return Gpu(visible="all")
    if text.lower().startswith("device_id="):
        ids = split_list(text.split("=", 1)[1], ",")
        if not ids or not all(re.fullmatch(r"[A-Za-z0-9_.:-]+", i) for i in ids):
            raise ValueError(f"bad device ids in {text!r}")
        return Gpu(visible=",".join(ids))
    if re.fullmatch(r"\d+", text) and int(text) > 0:
        return Gpu(count=int(text))
    raise ValueError(f"not a GPU setting: {text!r}")


_CONSTRAINT = re.compile(r"\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(\S(?:.*\S)?)\s*")


def label_key(key):
    """Swarm matches only node.*/engine.* keys; a bare key means a node label."""
    if key.startswith(("node.", "engine.")):
        return key
    return f"node.labels.{key}"


def parse_constraint(text):
    match = _CONSTRAINT.fullmatch(text)
    if not match:
        raise ValueError(f"bad constraint {text!r}, expected key==value or key!=value")
    key, op, value = match.groups()
    return f"{label_key(key)}{op}{value}"


def parse_constraints(text):
    return tuple(parse_constraint(item) for item in split_list(text, ","))


def parse_preferences(text):
    """'spread:node.labels.zone' -> (('spread', 'node.labels.zone'),)."""
    result = []
    for item in split_list(text, ","):
        strategy, sep, descriptor = (part.strip() for part in item.partition(":"))
        if not sep or strategy.lower() != "spread" or not descriptor:
            raise ValueError(f"bad preference {item!r}, expected spread:<label>")
        result.append(("spread", label_key(descriptor)))
    return tuple(result)


def parse_platforms(text):
    """'amd64:linux' -> (('amd64', 'linux'),)."""
    result = []
    for item in split_list(text, ","):
        arch, sep, os_name = (part.strip() for part in item.partition(":"))
        if not sep or not arch or not os_name:
            raise ValueError(f"bad platform {item!r}, expected arch:os")
        result.append((arch, os_name))
    return tuple(result)


_SUFFIX = re.compile(r"[A-Za-z0-9_.]+")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/:@]*")


@dataclass(frozen=True)
class SuffixRule:
    image: str
    constraints: tuple = ()
    gpu: Gpu = None  # None: SPAWNER_USE_GPUS applies


def parse_suffix_images(text):
    """'base:a==1,b==2->img:tag;torch->reg:5000/x' -> {suffix: SuffixRule}."""
    rules = {}
    for item in split_list(text, ";"):
        left, sep, image = item.partition("->")
        image = image.strip()
        suffix, _, constraints = (part.strip() for part in left.partition(":"))
        if not sep or not _SUFFIX.fullmatch(suffix) or not _IMAGE.fullmatch(image):
            raise ValueError(f"bad rule {item!r}")
        if suffix.lower() in rules:
            raise ValueError(f"suffix {suffix!r} given twice")
        rules[suffix.lower()] = SuffixRule(image, parse_constraints(constraints))
    return rules


def parse_suffix_gpus(text):
    """'torch->1;big->device_id=0,1' -> {suffix: Gpu}."""
    rules = {}
    for item in split_list(text, ";"):
        suffix, sep, gpus = (part.strip() for part in item.partition("->"))
        if not sep or not _SUFFIX.fullmatch(suffix):
            raise ValueError(f"bad rule {item!r}")
        rules[suffix.lower()] = parse_gpus(gpus)
    return rules


def user_suffix(username):
    """The part after the last '-', or None: 'alice-torch' -> 'torch'."""
    stem, sep, suffix = username.rpartition("-")
    if not sep or not stem or not suffix:
        return None
    return suffix.lower()


def parse_db_url(url):
    """Accept the URL forms operators paste; SQLAlchemy needs the driver."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        scheme = "postgresql+psycopg2"
    elif scheme in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
        scheme = "mysql+pymysql"
    elif scheme != "sqlite":
        raise ValueError(f"unsupported database {parts.scheme!r}")
    credentials = _split_credentials(url)
    if scheme != "sqlite" and credentials and any(c in credentials[1] for c in "@/?#"):
        # SQLAlchemy would cut the password there and connect elsewhere
        raise ValueError("the user name or password contains '@', '/', '?' or '#': "
                         "percent-encode them (%40, %2F, %3F, %23)")
    return scheme + url[len(parts.scheme):]


def _split_credentials(url):
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
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)  # libpq's query form
    parts = _split_credentials(url)
    if parts is None or ":" not in parts[1]:
        return url
    prefix, userinfo, rest = parts
    return f"{prefix}{userinfo.split(':', 1)[0]}:***@{rest}"


def parse_http_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s):// URL")
    parts.port  # raises ValueError on a bad port
    return url


# --------------------------------------------------------------------------
# Storage: one swarm volume mount per user
# --------------------------------------------------------------------------

VOLUME_TYPES = ("local", "nfs3", "nfs4", "cifs")
DEFAULT_OPTS = {
    "nfs3": ",rw,vers=3,nolock,soft",
    "nfs4": ",rw,nfsvers=4,async",
    "cifs": ",file_mode=0777,dir_mode=0777",
}
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Storage:
    type: str = "local"
    source_name: str = "jupyterhub-user-{username}"
    target: str = "/home/jovyan/work/persistence"
    host: str = ""
    device: str = ""
    opts: str = ""
    mkdir_root: str = "/jupyterhub_data"
    owner: tuple = (1000, 100)


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


def user_directory(storage, username):
    """Where the hub creates the user's directory on the mounted share, or
    None for local volumes. Never outside storage.mkdir_root."""
    if storage.type == "local":
        return None
    device = storage.device
    if storage.type == "cifs" and device.startswith("//"):
        device = device[2:].partition("/")[2]
    _, rel = split_device(device.lstrip(":"), username)
    root = os.path.realpath(storage.mkdir_root)
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ValueError(f"user directory {rel!r} escapes {root}")
    return path


# --------------------------------------------------------------------------
# What a user gets: image, placement, GPUs
# --------------------------------------------------------------------------


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


def plan_for_user(username, image, constraints, gpu, suffix_rules):
    """Image, constraints and GPUs for one user; the inputs are not changed."""
    rule = suffix_rules.get(user_suffix(username) or "")
    if rule is None:
        return UserPlan(image, tuple(constraints), gpu)
    extra = tuple(c for c in rule.constraints if c not in constraints)
    return UserPlan(
        rule.image,
        tuple(constraints) + extra,
        gpu if rule.gpu is None else rule.gpu,
    )


def merge_gpu_rules(image_rules, gpu_rules):
    """Attach SPAWNER_CONSTRAINT_WITH_GPUS to SPAWNER_CONSTRAINT_IMAGES rules."""
    unknown = sorted(set(gpu_rules) - set(image_rules))
    if unknown:
        raise ValueError(f"no image rule for suffix {', '.join(unknown)}")
    return {
        suffix: SuffixRule(rule.image, rule.constraints, gpu_rules.get(suffix))
        for suffix, rule in image_rules.items()
    }


def service_name(prefix, escaped_username, limit=63):
    """Docker service names are DNS labels: at most 63 characters."""
    name = f"{prefix}-{escaped_username}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11]}-{digest}"


# --------------------------------------------------------------------------
# The spawner
# --------------------------------------------------------------------------

from dockerspawner import SwarmSpawner  # noqa: E402
from tornado import web  # noqa: E402
from docker.errors import APIError, NotFound  # noqa: E402
from docker.types import DriverConfig, Mount, NetworkAttachmentConfig, SecretReference  # noqa: E402

# Task states in which swarm will not make this task run any more.
FINAL_STATES = {"failed", "rejected", "shutdown", "orphaned", "complete", "remove"}
# Scheduler reasons that no amount of waiting fixes (swarmkit's filters).
HOPELESS_PENDING = ("scheduling constraints not satisfied", "unsupported platform")
_NO_SUITABLE_NODE = re.compile(r"no suitable node \((.*)\)")


def pending_is_hopeless(err):
    """True when every reason in swarm's "no suitable node (a; b)" is one that
    waiting does not fix. Swarm counts each node under one reason, so
    "scheduling constraints not satisfied on 2 nodes; insufficient resources
    on 1 node" can still be placed once the third node frees resources."""
    match = _NO_SUITABLE_NODE.search(err)
    reasons = split_list(match.group(1), ";") if match else [err]
    return bool(reasons) and all(any(h in r for h in HOPELESS_PENDING) for r in reasons)


class SpawnFailed(web.HTTPError):
    """A user server that swarm could not run, with swarm's reason.

    An HTTPError with jupyterhub_message set: JupyterHub then shows the
    reason on the spawn page, in the API's error and in its log."""

    def __init__(self, reason):
        super().__init__(500, "%s", reason)
        self.jupyterhub_message = reason


class SwarmUserSpawner(SwarmSpawner):
    """SwarmSpawner with real volume mounts, per-user rules and task-address
    routing. Class attributes below are set once from the environment and
    never changed; each spawn derives its own values from them."""

    storage = Storage()
    base_constraints = ()
    placement = Placement()
    default_gpu = Gpu()
    suffix_rules = {}
    resource_wait = 60
    chown_local_volume = True

    def _object_name_default(self):
        return service_name(self.prefix, self.escaped_name)

    # -- per-user values ---------------------------------------------------
    def user_plan(self):
        return plan_for_user(
            self.user.name,
            self.image,
            self.base_constraints,
            self.default_gpu,
            self.suffix_rules,
        )

    @property
    def mounts(self):
        """Swarm `type=volume` mounts (SwarmSpawner would make bind mounts,
        which swarm rejects for named volumes)."""
        spec = storage_mount(self.storage, self.escaped_name)
        driver = spec.pop("driver_config", None)
        if driver:
            spec["driver_config"] = DriverConfig(driver["name"], driver["options"])
        return [Mount(**spec)]

    def get_env(self):
        env = super().get_env()
        gpu = self._plan.gpu if getattr(self, "_plan", None) else self.default_gpu
        if gpu.visible:
            env["NVIDIA_VISIBLE_DEVICES"] = gpu.visible
        if self.storage.type == "local" and self.chown_local_volume:
            # docker-stacks images start as root, chown this, then drop to
            # the notebook user: a new named volume is root-owned.
            env.setdefault("CHOWN_EXTRA", self.storage.target)
        return env

    async def start(self):
        plan = self._plan = self.user_plan()
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
        if self.storage.type == "local" and self.chown_local_volume:
            container_spec["user"] = "root"
        if getattr(self, "_ssl_secrets", None):
            container_spec["secrets"] = list(self._ssl_secrets)
        self.extra_container_spec = container_spec
        if getattr(self, "_ssl_name", None):
            self.extra_task_spec = {"networks": [
                NetworkAttachmentConfig(self.network_name, aliases=[self._ssl_name])]}
        self._events = []
        await self._make_user_directory()
        ip, port = await super().start()
        if self.server is not None:  # None only for spawners built by tests
            await self._wait_for_port(ip, port)
        return ip, port

    async def _make_user_directory(self):
        path = user_directory(self.storage, self.escaped_name)
        if path is None:
            return
        root = self.storage.mkdir_root
        if not os.path.isdir(root):
            self.log.info("%s is not mounted in the hub; not creating %s", root, path)
            return
        os.makedirs(path, exist_ok=True)
        try:
            os.chown(path, *self.storage.owner)
        except OSError as e:
            self.log.warning("Could not chown %s: %s", path, e)

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

    async def create_certs(self):
        """The server's certificate, for a name of this spawn only: a network
        alias of the service (get_ip_and_port). Right after a stop, swarm's
        DNS may still answer the service's name with the former task's
        address; a new name has no past."""
        base = self.service_name
        if len(base) > 40:  # with the suffixes of the secrets: at most 64 characters
            base = base[:31] + "-" + hashlib.sha256(base.encode()).hexdigest()[:8]
        self._ssl_name = f"{base}-{secrets.token_hex(3)}"
        self.ssl_alt_names = [f"DNS:{self._ssl_name}", f"DNS:{self.service_name}"]
        return await super().create_certs()

    async def move_certs(self, paths):
        """Make the server's key, certificate and CA bundle swarm secrets
        named after this spawn's alias (create_certs runs first), labelled
        with the service's name; return their paths in the task."""
        await self._remove_ssl_secrets()  # left by a hub that stopped meanwhile
        uid, gid = self.storage.owner
        refs, moved = [], {}
        for key, filename, private in self.SSL_FILES:
            with open(paths[key], "rb") as f:
                data = f.read()
            name = f"{self._ssl_name}-{filename.replace('jupyterhub-', '').replace('.', '-')}"
            created = await self.docker(
                "create_secret", name, data, labels={self.SSL_LABEL: self.service_name})
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
            try:
                await self.docker("remove_secret", secret["ID"])
            except NotFound:
                pass
            except Exception as e:
                self.log.warning("Could not remove secret %s: %s",
                                 secret["Spec"]["Name"], e)

    async def stop(self, now=False):
        await super().stop(now=now)
        await self._remove_ssl_secrets()

    # -- waiting for the task, with swarm's reasons --------------------------
    def scrub(self, text):
        """Swarm's mount errors quote the volume options: hide them, since
        CIFS options may carry credentials."""
        opts = self.storage.opts.strip(",")
        if opts:
            text = text.replace(opts, "<volume options hidden>")
        return re.sub(r"(password|pass|username|user|credentials)=[^,\s]*", r"\1=***", text)

    def _event(self, progress, message):
        self._events.append({"progress": progress, "message": message})
        self.log.info("%s: %s", self.service_name, message)

    async def progress(self):
        shown = 0
        while True:
            events = getattr(self, "_events", [])
            while shown < len(events):
                yield events[shown]
                shown += 1
            if self._spawn_future is not None and self._spawn_future.done():
                return
            await asyncio.sleep(0.25)

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
            raise SpawnFailed(f"Your server could not start: {reason}") from None

    async def start_object(self):
        started = time.monotonic()
        last = None
        try:
            while True:
                tasks = sorted(await self._tasks(), key=lambda t: t.get("CreatedAt", ""))
                states = [t.get("Status", {}).get("State", "") for t in tasks]
                if "running" in states:
                    return
                # Swarm replaces a task that ended at once (restart policy):
                # the newest task is then a fresh one, "ready" or "new", and
                # the reason is on the older one. The service is new, so any
                # ended task is this spawn's.
                ended = self._last_ended(tasks)
                if ended:
                    await self._fail(f"swarm {ended[0]} the task: {ended[1]}")
                if tasks:
                    status = tasks[-1].get("Status", {})
                    state = status.get("State", "")
                    reason = self.scrub(status.get("Err") or status.get("Message") or "")
                    waited = time.monotonic() - started
                    if state == "pending" and status.get("Err"):
                        err = self.scrub(status["Err"])
                        if pending_is_hopeless(err) and waited > 2:
                            await self._fail(err + self._placement_hint(err))
                        if waited > self.resource_wait:
                            await self._fail(f"{err} (waited {waited:.0f}s"
                                             f"{self._wanted_hint(err)})")
                    if (state, reason) != last:
                        last = (state, reason)
                        self._event(*self._progress_message(state, reason))
                await asyncio.sleep(0.25)
        except asyncio.CancelledError:
            # start_timeout passed, or the user cancelled the pending spawn:
            # remove the service, or swarm keeps trying it for nobody.
            await self._remove_service()
            raise

    def _last_ended(self, tasks):
        """(state, swarm's reason) of the last of `tasks` in a final state,
        or None."""
        ended = [t.get("Status", {}) for t in tasks]
        ended = [s for s in ended if s.get("State") in FINAL_STATES]
        if not ended:
            return None
        return ended[-1]["State"], self.scrub(ended[-1].get("Err") or ended[-1].get("Message") or "")

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
                        _, reason = self._last_ended(tasks) or ("", "")
                        await self._fail(f"the server stopped while starting: {reason}")
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

    async def _remove_service(self):
        try:
            await self.docker("remove_service", self.object_id or self.service_name)
        except NotFound:
            pass
        except Exception as e:
            self.log.warning("Could not remove %s: %s", self.service_name, e)
        self.object_id = ""
        await self._remove_ssl_secrets()

    async def _fail(self, reason):
        await self._remove_service()
        raise SpawnFailed(f"Your server could not start: {reason}")

    async def get_ip_and_port(self):
        """The running task's own address on the user network.

        The service name may still resolve to the previous server's container
        for a few seconds after a stop; the task address cannot. With
        internal TLS, a name it is: the server's certificate is made before
        the task has an address, for the network alias of this spawn
        (create_certs), which resolves to this task only.
        """
        if self.internal_ssl:
            return getattr(self, "_ssl_name", None) or self.service_name, self.port
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

from jupyterhub.proxy import ConfigurableHTTPProxy  # noqa: E402

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


class SwarmProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy; with internal TLS and an external proxy, the
    hub writes the proxy's key, certificates and CA bundles into the volume
    it shares with the proxy service, which waits for them before starting
    (docker-compose.swarm.yml)."""

    certs_dir = PROXY_CERTS_DIR

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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

    proxy_wait = 60  # seconds

    async def get_all_routes(self, client=None):
        """The hub's first request to an external proxy, at start-up: wait
        for the proxy's API to listen (the proxy starts after its TLS files
        are written, or simply later than the hub) rather than exit."""
        deadline = time.monotonic() + self.proxy_wait
        waiting = False
        while True:
            try:
                return await super().get_all_routes(client)
            except OSError as e:  # refused, or the name is not there yet
                if self.should_start or time.monotonic() > deadline:
                    raise
                if not waiting:
                    waiting = True
                    self.log.info("Waiting for the proxy's API at %s (%s)", self.api_url, e)
                await asyncio.sleep(0.5)


# --------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------

from nativeauthenticator import NativeAuthenticator  # noqa: E402
from nativeauthenticator.handlers import TEMPLATE_DIR as NATIVE_TEMPLATES  # noqa: E402
from nativeauthenticator.handlers import SignUpHandler  # noqa: E402
from nativeauthenticator.orm import UserInfo  # noqa: E402

# Lowercase letters, digits, '.', '_' and '-', starting with a letter or
# digit, at most 32 characters: names that stay valid and distinct as docker
# service, volume and directory names. JupyterHub lowercases names first.
DEFAULT_USERNAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,31}"


def anchored(pattern):
    return rf"(?:{pattern})\Z"


class RuledSignUpHandler(SignUpHandler):
    """Sign-up that says which rule a refused user name breaks."""

    def get_result_message(self, user, human, taken, confirmation_matches, is_admin):
        alert, message = super().get_result_message(
            user, human, taken, confirmation_matches, is_admin)
        name = self.get_body_argument("username", "", strip=False)
        normalized = self.authenticator.normalize_username(name)
        if user is None and human and not taken and confirmation_matches and \
                not self.authenticator.validate_username(normalized):
            message = (f"The user name {name!r} is not allowed: use lowercase letters, "
                       "digits, '.', '_' and '-', starting with a letter or digit, "
                       "at most 32 characters."
                       if self.authenticator.username_pattern == anchored(DEFAULT_USERNAME_PATTERN) else
                       f"The user name {name!r} is not allowed: it must match "
                       f"{self.authenticator.username_pattern}.")
        return alert, message


class SwarmNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose admin accounts can be set up at start-up
    (AUTH_ADMIN_PASSWORD), so nobody can claim an admin name by signing up."""

    admin_password = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.admin_password:
            self.bootstrap_admins(self.admin_password)
        elif self.enable_signup:
            for name in sorted(self.admin_users):
                if self.get_user(name) is None:
                    self.log.warning(
                        "Admin account %r does not exist yet and sign-up is open: whoever "
                        "signs up first as %r becomes admin. Set AUTH_ADMIN_PASSWORD or "
                        "AUTH_ADMIN_PASSWORD_FILE to create it at start-up.", name, name)

    def get_handlers(self, app):
        return [(path, RuledSignUpHandler if handler is SignUpHandler else handler)
                for path, handler in super().get_handlers(app)]

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
# The hub database, checked before the hub starts
# --------------------------------------------------------------------------

DB_CONNECT_WAIT = 30  # seconds to wait for a database that is still starting
_AUTH_FAILURES = ("password authentication failed", "access denied", "no password supplied")


def check_database(url, upgrade, wait=DB_CONNECT_WAIT):
    """Connect once and compare schema versions, so a wrong URL, password or
    schema stops the hub with a message naming the variable to change."""
    from jupyterhub import orm
    from sqlalchemy import create_engine

    shown = mask_url(url)
    credentials = _split_credentials(url)
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
    """True when this file is loaded by a starting `jupyterhub`, not by tests."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        return False
    return JupyterHub.initialized() and not JupyterHub.instance().generate_config


# --------------------------------------------------------------------------
# Building the configuration
# --------------------------------------------------------------------------

BUILTIN_PROXY_API_PORT = 8081


def configure(c, env):
    """Fill the JupyterHub config `c` from `env` (an Env)."""

    # -- Proxy: started by the hub, or an external configurable-http-proxy ----
    proxy_should_start = env.bool("PROXY_SHOULD_START", True)
    if not proxy_should_start:
        why = "required when PROXY_SHOULD_START is false"
        c.ConfigurableHTTPProxy.should_start = False
        c.ConfigurableHTTPProxy.api_url = env.parsed(
            "PROXY_API_URL", parse_http_url, "an http(s)://host:port URL"
        ) or env.str("PROXY_API_URL", required_because=why)
        c.ConfigurableHTTPProxy.auth_token = env.str(
            "CONFIGPROXY_AUTH_TOKEN", required_because=why, secret=True
        )
    else:
        # The hub's own port defaults to 8001, configurable-http-proxy's API
        # port too: the built-in proxy's API moves to 127.0.0.1:8081.
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{BUILTIN_PROXY_API_PORT}"
        token = env.str("CONFIGPROXY_AUTH_TOKEN", secret=True)
        if token:
            c.ConfigurableHTTPProxy.auth_token = token

    # -- Hub ------------------------------------------------------------------
    hub_port = env.port("HUB_HUB_PORT", 8001)
    public_port = env.port("HUB_PORT", 8000)
    if public_port in (8001, 8081) or public_port == hub_port:
        raise ConfigError(
            "HUB_PORT", str(public_port),
            f"a port other than 8001, 8081 and HUB_HUB_PORT ({hub_port})",
        )
    if proxy_should_start and hub_port == BUILTIN_PROXY_API_PORT:
        raise ConfigError(
            "HUB_HUB_PORT", str(hub_port),
            "a port other than 8081 (the built-in proxy's API port)",
        )
    c.JupyterHub.port = public_port
    c.JupyterHub.log_level = env.choice(
        "HUB_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_port = hub_port
    c.JupyterHub.hub_connect_ip = env.str("HUB_CONNECT_IP", "jupyterhub")

    ssl_key, ssl_cert = env.str("HUB_SSL_KEY"), env.str("HUB_SSL_CERT")
    if bool(ssl_key) != bool(ssl_cert):
        missing = "HUB_SSL_CERT" if ssl_key else "HUB_SSL_KEY"
        raise ConfigError(missing, "", "a path, since HUB_SSL_KEY and HUB_SSL_CERT go together")
    if ssl_key:
        c.JupyterHub.ssl_key = ssl_key
        c.JupyterHub.ssl_cert = ssl_cert

    c.JupyterHub.cookie_secret_file = env.str(
        "HUB_COOKIE_SECRET_FILE", "/data/jupyterhub_cookie_secret"
    )
    c.JupyterHub.db_url = env.parsed(
        "HUB_DB_URL",
        parse_db_url,
        "sqlite:///<path>, postgresql://..., postgres://..., mysql://... or mysql+pymysql://...",
        default="sqlite:////data/jupyterhub.sqlite",
        secret=mask_url,
    )
    c.JupyterHub.upgrade_db = upgrade_db = env.bool("HUB_UPGRADE_DB", False)
    if running_hub():
        check_database(c.JupyterHub.db_url, upgrade_db)
    for trait, name, default in HUB_INTEGERS:
        setattr(c.JupyterHub, trait, env.int(name, default, minimum=0))
    # Internal TLS: hub, proxy and user servers verify each other with
    # certificates from CAs JupyterHub keeps in HUB_INTERNAL_SSL_PATH. The
    # names they reach each other by go into the certificates; the proxy's
    # API then speaks HTTPS only.
    internal_ssl_path = env.str("HUB_INTERNAL_SSL_PATH")
    c.JupyterHub.proxy_class = SwarmProxy
    if internal_ssl_path:
        if not os.path.isabs(internal_ssl_path):
            raise ConfigError("HUB_INTERNAL_SSL_PATH", internal_ssl_path,
                              "an absolute path in the hub's container")
        c.JupyterHub.internal_ssl = True
        c.JupyterHub.internal_certs_location = internal_ssl_path
        api_url = urlsplit(c.ConfigurableHTTPProxy.api_url)
        if api_url.scheme == "http":
            c.ConfigurableHTTPProxy.api_url = api_url._replace(scheme="https").geturl()
        names = []
        for host in (c.JupyterHub.hub_connect_ip, api_url.hostname):
            try:
                kind = "IP" if ipaddress.ip_address(host) else "DNS"
            except ValueError:
                kind = "DNS"
            if f"{kind}:{host}" not in names:
                names.append(f"{kind}:{host}")
        c.JupyterHub.trusted_alt_names = names
    # User servers outlive the hub: a hub restart must not stop them.
    c.JupyterHub.cleanup_servers = False

    # Idle culling (opt-in): a hub-managed jupyterhub-idle-culler service.
    cull_timeout = env.int("HUB_CULL_IDLE_TIMEOUT", 0, minimum=0)
    cull_every = env.int("HUB_CULL_EVERY", 0, minimum=0)
    cull_max_age = env.int("HUB_CULL_MAX_AGE", 0, minimum=0)
    if cull_timeout:
        # The culler runs in the hub's container: it asks the hub's API there,
        # not by the hub's swarm name, which resolves only once the hub is
        # healthy (JupyterHub starts its services before that).
        scheme = "https" if internal_ssl_path else "http"
        command = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull_timeout}",
                   f"--url={scheme}://127.0.0.1:{hub_port}/hub/api"]
        if cull_every:
            command.append(f"--cull-every={cull_every}")
        if cull_max_age:
            command.append(f"--max-age={cull_max_age}")
        if internal_ssl_path:  # the hub's API then speaks TLS only
            command += ["--ssl-enabled=true", f"--internal-certs-location={internal_ssl_path}"]
        c.JupyterHub.services = [{"name": "idle-culler", "command": command}]
        c.JupyterHub.load_roles = [{
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }]

    # -- Spawner: one swarm service per user ---------------------------------
    c.JupyterHub.spawner_class = SwarmUserSpawner
    spawner = c.SwarmUserSpawner
    spawner.image = env.str("SPAWNER_NOTEBOOK_IMAGE", "jupyter/base-notebook:notebook-6.5.4")
    spawner.pull_policy = env.choice(
        "SPAWNER_PULL_POLICY", "ifnotpresent", ("ifnotpresent", "always", "never", "skip")
    )
    spawner.network_name = env.str(
        "SPAWNER_NETWORK_NAME", required_because="the overlay network user servers join"
    )
    spawner.use_internal_ip = True
    notebook_dir = env.str("SPAWNER_NOTEBOOK_DIR", "/home/jovyan/work")
    if not notebook_dir.startswith("/"):
        raise ConfigError("SPAWNER_NOTEBOOK_DIR", notebook_dir, "an absolute path")
    spawner.notebook_dir = notebook_dir

    storage = read_storage(env, notebook_dir)
    SwarmUserSpawner.storage = storage

    cpu_limit = env.float("SPAWNER_CPU_LIMIT", 2.0)
    cpu_guarantee = env.float("SPAWNER_CPU_GUARANTEE", 1.0)
    mem_limit = env.bytes("SPAWNER_MEM_LIMIT", "4G")
    mem_guarantee = env.bytes("SPAWNER_MEM_GUARANTEE", "1G")
    if cpu_limit and cpu_guarantee > cpu_limit:
        raise ConfigError("SPAWNER_CPU_GUARANTEE", str(cpu_guarantee),
                          f"at most SPAWNER_CPU_LIMIT ({cpu_limit:g})")
    if mem_limit and mem_guarantee > mem_limit:
        raise ConfigError("SPAWNER_MEM_GUARANTEE", env.raw("SPAWNER_MEM_GUARANTEE") or "1G",
                          "at most SPAWNER_MEM_LIMIT")
    spawner.cpu_limit = cpu_limit or None
    spawner.cpu_guarantee = cpu_guarantee or None
    spawner.mem_limit = mem_limit or None
    spawner.mem_guarantee = mem_guarantee or None

    spawner.environment = env.parsed(
        "SPAWNER_ENVIRONMENT", parse_env_pairs, "NAME:value pairs separated by ';'", default={}
    )
    endpoint_mode = env.choice("SPAWNER_ENDPOINT_MODE", None, ("vip", "dnsrr"))
    spawner.extra_endpoint_spec = {"mode": endpoint_mode} if endpoint_mode else {}
    spawn_cmd = env.parsed(
        "SPAWNER_SPAWN_CMD", _parse_command, "a command line", default=["start-singleuser.sh"]
    )
    spawner.cmd = spawn_cmd
    if not env.bool("SPAWNER_REMOVE", True):
        # Swarm always removes a stopped user's service; only the persistent
        # volume survives a stop, whatever this says.
        print("jupyterhub_config: SPAWNER_REMOVE=false has no effect on swarm")
    spawner.debug = env.bool("SPAWNER_DEBUG", True)
    for trait, name, default in SPAWNER_INTEGERS:
        setattr(spawner, trait, env.int(name, default, minimum=0))
    SwarmUserSpawner.resource_wait = env.int("SPAWNER_RESOURCE_WAIT", 60, minimum=0)

    SwarmUserSpawner.default_gpu = env.parsed("SPAWNER_USE_GPUS", parse_gpus, GPU_FORMS, Gpu())
    SwarmUserSpawner.base_constraints = env.parsed(
        "SPAWNER_CONSTRAINTS", parse_constraints, "key==value constraints separated by ','", ()
    )
    SwarmUserSpawner.placement = Placement(
        preferences=env.parsed(
            "SPAWNER_PREFERENCE", parse_preferences, "spread:<label> separated by ','", ()
        ),
        platforms=env.parsed(
            "SPAWNER_PLATFORM", parse_platforms, "arch:os pairs separated by ','", ()
        ),
    )
    image_rules = env.parsed(
        "SPAWNER_CONSTRAINT_IMAGES", parse_suffix_images,
        "suffix[:constraint,...]->image rules separated by ';'", {},
    )
    gpu_rules = env.parsed(
        "SPAWNER_CONSTRAINT_WITH_GPUS", parse_suffix_gpus,
        f"suffix->gpus rules separated by ';' (gpus: {GPU_FORMS})", {},
    )
    try:
        SwarmUserSpawner.suffix_rules = merge_gpu_rules(image_rules, gpu_rules)
    except ValueError as e:
        raise ConfigError(
            "SPAWNER_CONSTRAINT_WITH_GPUS", env.raw("SPAWNER_CONSTRAINT_WITH_GPUS"),
            f"suffixes that SPAWNER_CONSTRAINT_IMAGES has rules for ({e})",
        ) from None

    # -- Auth: NativeAuthenticator -------------------------------------------
    c.JupyterHub.authenticator_class = SwarmNativeAuthenticator
    # NativeAuthenticator's page.html adds "Authorize Users" (admins) and
    # "Change Password" to the navigation bar, but only when its templates
    # come before JupyterHub's: without this, no hub page links to
    # /hub/authorize.
    c.JupyterHub.template_paths = [NATIVE_TEMPLATES]
    admins = split_list(env.str("AUTH_ADMIN_USER", "admin"), ",")
    c.Authenticator.admin_users = set(admins)
    # JupyterHub 5 allows nobody by default; NativeAuthenticator's own
    # approval step is what decides who may log in.
    c.Authenticator.allow_all = True
    pattern = env.str("AUTH_USERNAME_PATTERN", DEFAULT_USERNAME_PATTERN)
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ConfigError("AUTH_USERNAME_PATTERN", pattern, f"a regular expression ({e})") from None
    bad_admins = [a for a in admins if not compiled.fullmatch(a.lower())]
    if bad_admins:
        raise ConfigError("AUTH_ADMIN_USER", ",".join(admins),
                          f"names matching AUTH_USERNAME_PATTERN ({pattern})")
    # JupyterHub only anchors the start (re.match): anchor the end too.
    c.Authenticator.username_pattern = anchored(pattern)
    auth = c.SwarmNativeAuthenticator
    auth.check_common_password = env.bool("AUTH_CHECK_COMMON_PASSWORD", False)
    for trait, name, default in AUTH_INTEGERS:
        setattr(auth, trait, env.int(name, default, minimum=0))
    auth.enable_signup = env.bool("AUTH_ENABLE_SIGNUP", True)
    auth.open_signup = env.bool("AUTH_OPEN_SIGNUP", False)
    admin_password = env.str("AUTH_ADMIN_PASSWORD", secret=True)
    if admin_password is not None and len(admin_password) < auth.minimum_password_length:
        raise ConfigError("AUTH_ADMIN_PASSWORD", admin_password,
                          f"at least AUTH_MINIMUM_PASSWORD_LENGTH ({auth.minimum_password_length}) characters",
                          secret=True)
    SwarmNativeAuthenticator.admin_password = admin_password
    return c


# (trait, variable, default): plain integers, one place to read and change.
HUB_INTEGERS = [
    ("active_server_limit", "HUB_ACTIVE_SERVER_LIMIT", 100),
    ("active_user_window", "HUB_ACTIVE_USER_WINDOW", 1800),
    ("activity_resolution", "HUB_ACTIVITY_RESOLUTION", 30),
    ("concurrent_spawn_limit", "HUB_CONCURRENT_SPAWN_LIMIT", 20),
    ("init_spawners_timeout", "HUB_INIT_SPAWNERS_TIMEOUT", 60),
]
SPAWNER_INTEGERS = [
    ("consecutive_failure_limit", "SPAWNER_CONSECUTIVE_FAILURE_LIMIT", 0),
    ("poll_interval", "SPAWNER_POLL_INTERVAL", 30),
    ("start_timeout", "SPAWNER_START_TIMEOUT", 120),
]
AUTH_INTEGERS = [
    ("minimum_password_length", "AUTH_MINIMUM_PASSWORD_LENGTH", 6),
    ("allowed_failed_logins", "AUTH_ALLOWED_FAILED_LOGINS", 3),
    ("seconds_before_next_try", "AUTH_SECONDS_BEFORE_NEXT_TRY", 1200),
]


def _parse_command(text):
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ValueError(str(e)) from None
    if not words:
        raise ValueError("empty command")
    return words


def read_storage(env, notebook_dir):
    kind = env.choice("SPAWNER_PERSISTENCE_VOLUME_TYPE", "local", VOLUME_TYPES)
    subpath = env.str("SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH", "/persistence")
    if not subpath.startswith("/"):
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH", subpath,
                          "a path starting with '/'")
    source_name = env.str("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", "jupyterhub-user-{username}")
    host = device = opts = ""
    if kind in ("nfs3", "nfs4"):
        why = f"required when SPAWNER_PERSISTENCE_VOLUME_TYPE is {kind}"
        host = env.str("SPAWNER_PERSISTENCE_NFS_HOST", required_because=why)
        device = env.str("SPAWNER_PERSISTENCE_NFS_DEVICE", required_because=why)
        opts = env.str("SPAWNER_PERSISTENCE_NFS_OPTS", DEFAULT_OPTS[kind])
        if not device.lstrip(":").startswith("/"):
            raise ConfigError("SPAWNER_PERSISTENCE_NFS_DEVICE", device, "a path like :/export/dir")
    elif kind == "cifs":
        why = "required when SPAWNER_PERSISTENCE_VOLUME_TYPE is cifs"
        host = env.str("SPAWNER_PERSISTENCE_CIFS_HOST", required_because=why)
        device = env.str("SPAWNER_PERSISTENCE_CIFS_DEVICE", required_because=why)
        opts = env.str("SPAWNER_PERSISTENCE_CIFS_OPTS", DEFAULT_OPTS["cifs"], secret=True)
    if opts and not opts.startswith(","):
        opts = "," + opts
    owner_text = env.str("SPAWNER_PERSISTENCE_VOLUME_OWNER", "1000:100")
    match = re.fullmatch(r"(\d+):(\d+)", owner_text)
    if not match:
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_OWNER", owner_text, "uid:gid, like 1000:100")
    storage = Storage(
        type=kind,
        source_name=source_name,
        target=notebook_dir.rstrip("/") + subpath,
        host=host,
        device=device,
        opts=opts,
        mkdir_root=env.str("SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH", "/jupyterhub_data"),
        owner=(int(match.group(1)), int(match.group(2))),
    )
    # Check the templates now, with a sample name, not at a user's first spawn.
    sample = "sample-2duser"
    try:
        storage_mount(Storage(source_name=source_name, target=storage.target), sample)
    except ValueError as e:
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", source_name,
                          f"a docker volume name, may contain {{username}} ({e})") from None
    try:
        storage_mount(storage, sample)
    except ValueError as e:
        name = "SPAWNER_PERSISTENCE_%s_DEVICE" % ("CIFS" if kind == "cifs" else "NFS")
        raise ConfigError(name, device, f"a path, may contain {{username}} ({e})") from None
    return storage


# --------------------------------------------------------------------------
# The configuration check: python3 jupyterhub_config.py [username ...]
# --------------------------------------------------------------------------


def _shown(name, value):
    if value is None or value == "":
        return "-"
    if name == "HUB_DB_URL":
        return mask_url(str(value))
    if name in SECRET_FILES:
        return "<hidden>"
    if isinstance(value, (tuple, list, set, dict)):
        return ",".join(map(str, value)) or "-"
    if not isinstance(value, (str, int, float)):  # parsed defaults
        return "-"
    return str(value)


def check_main(argv, environ, out=sys.stdout):
    """Load the configuration as the hub does (nothing is started), print each
    variable's effective value and where it came from, then what each user
    named on the command line would get. Bad input exits like the hub."""
    from dockerspawner import DockerSpawner
    from traitlets.config import Config

    env = Env(environ)
    c = configure(Config(), env)
    print("variable | value | source", file=out)
    for name in sorted(env.report):
        value, source = env.report[name]
        print(f"{name} | {_shown(name, value)} | {source}", file=out)
    cls = SwarmUserSpawner
    pattern = re.compile(c.Authenticator.username_pattern)
    for username in argv:
        name = username.lower()
        print(f"\nuser {name}:", file=out)
        if not pattern.fullmatch(name):
            print(f"  refused: does not match AUTH_USERNAME_PATTERN ({pattern.pattern})", file=out)
            continue
        escaped = DockerSpawner._escape(name)
        plan = plan_for_user(name, c.SwarmUserSpawner.image, cls.base_constraints,
                             cls.default_gpu, cls.suffix_rules)
        mount = storage_mount(cls.storage, escaped)
        options = mount.get("driver_config", {}).get("options", {})
        if cls.storage.type == "cifs" and options:
            options["o"] = f"addr={cls.storage.host},<SPAWNER_PERSISTENCE_CIFS_OPTS hidden>"
        gpu = (f"{plan.gpu.count} x NVIDIA-GPU" if plan.gpu.count else
               f"NVIDIA_VISIBLE_DEVICES={plan.gpu.visible}" if plan.gpu.visible else "none")
        rows = [
            ("service", service_name("jupyter", escaped)),
            ("image", plan.image),
            ("constraints", ", ".join(plan.constraints) or "none"),
            ("preferences", ", ".join(f"{a}:{b}" for a, b in cls.placement.preferences) or "none"),
            ("platforms", ", ".join(f"{a}:{b}" for a, b in cls.placement.platforms) or "none"),
            ("gpus", gpu),
            ("volume", f"{mount['source']} -> {mount['target']}"),
        ]
        if options:
            rows.append(("volume options", ", ".join(f"{k}={v}" for k, v in options.items())))
        directory = user_directory(cls.storage, escaped)
        if directory:
            rows.append(("directory made by the hub", directory))
        for key, value in rows:
            print(f"  {key}: {value}", file=out)
    return 0


if "get_config" in globals():
    configure(get_config(), Env(os.environ))  # noqa: F821
elif __name__ == "__main__":
    sys.exit(check_main(sys.argv[1:], os.environ))
