"""JupyterHub on Docker Swarm, configured from environment variables.

Read top to bottom: the typed readers, the parsers of the spec's rules, then
one section per part of the variable reference (docs/reference.md), in its
order: Proxy, Hub, Spawner (storage, resources, placement and suffix rules),
Auth, and last the operator's own configuration files (HUB_EXTRA_CONFIG_DIR).
Plain settings are tables of (variable, reader, default, trait): the tables
are the one place a default is written. A reader turns a string into a typed
value or raises ConfigError naming the variable, the value and the accepted
forms.

Validation is pure: every variable is read and checked before anything is
contacted; only then does a starting hub check its database.

The machinery the settings drive (the spawner, the proxy, the authenticator,
the database check, the check command) lives in jupyterhub_swarm.py beside
this file; the imports go one way, from here to there.

Run as a script it is the configuration check:
    python3 jupyterhub_config.py [username ...]
"""

import copy
import ipaddress
import os
import re
import shlex
import sys
from fractions import Fraction
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from jupyterhub_swarm import (  # noqa: E402
    DEFAULT_USERNAME_PATTERN,
    NATIVE_TEMPLATES,
    PASSWORD_MAX_BYTES,
    SWARM_TEMPLATES,
    ConfigError,
    FreshResolver,
    Gpu,
    Placement,
    Profile,
    Storage,
    SuffixRule,
    SwarmNativeAuthenticator,
    SwarmProxy,
    SwarmUserSpawner,
    anchored,
    below_root,
    check_database,
    check_main,
    db_connect_args,
    mask_url,
    password_too_long,
    printable_name,
    renew_hub_certificate,
    run_config_file,
    running_hub,
    server_path,
    share_root,
    split_credentials,
    split_device,
    split_list,
    storage_mount,
)

# --------------------------------------------------------------------------
# Typed readers
# --------------------------------------------------------------------------

# Swarm's resources are int64 (api.Resources: NanoCPUs, MemoryBytes; discrete
# generic resources): a larger value fails every spawn.
INT64_MAX = 2**63 - 1

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}

# Secret-bearing variables also accept <NAME>_FILE, a file holding the value
# (docker secrets: /run/secrets/<name>), as the official database images do.
# docs/reference.md: "Secrets from files".
SECRET_FILES = {
    "CONFIGPROXY_AUTH_TOKEN": "CONFIGPROXY_AUTH_TOKEN_FILE",
    "HUB_DB_URL": "HUB_DB_URL_FILE",
    "SPAWNER_PERSISTENCE_CIFS_OPTS": "SPAWNER_PERSISTENCE_CIFS_OPTS_FILE",
    "AUTH_ADMIN_PASSWORD": "AUTH_ADMIN_PASSWORD_FILE",
    "HUB_METRICS_TOKEN": "HUB_METRICS_TOKEN_FILE",
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

    def int(self, name, default, minimum=0, maximum=None):
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


# The readers of the tables: reader(env, variable, default) -> value.
def text(env, name, default):
    return env.str(name, default)


def secret(env, name, default):
    return env.str(name, default, secret=True)


def boolean(env, name, default):
    return env.bool(name, default)


def integer(env, name, default):  # >= 0
    return env.int(name, default)


def port(env, name, default):
    return env.port(name, default)


def number(env, name, default):  # >= 0
    return env.float(name, default)


def positive(env, name, default):  # >= 1: 0 would fail every use at once
    return env.int(name, default, minimum=1)


def size(env, name, default):
    return env.bytes(name, default)


# The least memory a swarm task may be limited or reserved to: swarmkit's
# manager/controlapi (validateResources) refuses less than 4 MiB, and the
# node's dockerd then refuses to create a container with less than 6 MiB
# (moby daemon/daemon_unix.go, linuxMinMemory: "Minimum memory limit allowed
# is 6MB", the same for reservations; 4 MiB before moby 20.10).
MIN_MEMORY = 6 * 1024**2
MEMORY_FORMS = ("a size like 512M, 4G or a number of bytes: 0 (none), or from 6M "
                f"(dockerd's least) to {INT64_MAX} bytes")


def memory(env, name, default):
    """A swarm memory limit or reservation in bytes, 0 for none."""
    value = env.bytes(name, default)
    if value and not MIN_MEMORY <= value <= INT64_MAX:
        raise ConfigError(name, env.raw(name) or default, MEMORY_FORMS)
    return value


# swarmkit's validateResources refuses NanoCPUs below 1e6 (0.001 CPU);
# dockerspawner sends int(cpus * 1e9), an int64.
CPU_FORMS = "a number of CPUs: 0 (none), or from 0.001 to 9223372036"


def cpus(env, name, default):
    value = env.float(name, default)  # a finite number >= 0
    nanos = value * 1e9
    if value and not (nanos < 2.0**63 and int(nanos) >= 10**6):
        raise ConfigError(name, env.raw(name), CPU_FORMS)
    return value


def one_of(*words):
    return lambda env, name, default: env.choice(name, default, words)


def required(because):
    return lambda env, name, default: env.str(name, required_because=because)


def rule(parser, accepted, secret=False):
    return lambda env, name, default: env.parsed(name, parser, accepted, default, secret)


def apply(c, env, table):
    """Read every (variable, reader, default, trait) row, set the traits
    named, and return {variable: value} for the checks that follow."""
    values = {}
    for name, reader, default, trait in table:
        values[name] = value = reader(env, name, copy.deepcopy(default))
        if trait:
            section, attribute = trait.split(".")
            setattr(c[section], attribute, value)
    return values


# --------------------------------------------------------------------------
# Parsers of the spec's rules: pure, raising ValueError
# --------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(text):
    """'4G' -> 4294967296. Units K/M/G/T are powers of 1024, like docker's."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:ib?|b)?", text.strip().lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    # exactly: a float would round 9007199254740993 bytes, or push a size
    # just below 2^63 over it
    number = Fraction(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if number < 1 and number != 0:
        raise ValueError(f"size below one byte: {text!r}")
    return int(number)


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


def parse_command(text):
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ValueError(str(e)) from None
    if not words:
        raise ValueError("empty command")
    return words


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
        if int(text) > INT64_MAX:  # swarm's generic resources count in int64
            raise ValueError(f"more GPUs than swarm can count: {text!r}")
        return Gpu(count=int(text))
    raise ValueError(f"not a GPU setting: {text!r}")


# Swarm's constraint grammar, as swarmkit's manager/constraint/constraint.go
# parses it (and manager/controlapi refuses a service that breaks it): split
# at the first "==", else the first "!="; the key, trimmed, must match
# alphaNumeric `^(?i)[a-z_][a-z0-9\-_.]+$`, the value, trimmed, valuePattern
# `^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`. Go's \s is [\t\n\f\r ];
# only ASCII letters pass here (Go's (?i) also folds in the Kelvin sign and
# the long s). NodeMatches knows only the keys below: with any other key a
# task matches no node and waits forever.
CONSTRAINT_OPERATORS = ("==", "!=")
_CONSTRAINT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9\-_.]+")
_CONSTRAINT_VALUE = re.compile(r"[A-Za-z0-9:\-_\t\n\f\r .*()?+\[\]\\^$|/]+")
NODE_KEYS = ("node.id", "node.hostname", "node.ip", "node.role",
             "node.platform.os", "node.platform.arch")
LABEL_PREFIXES = ("node.labels.", "engine.labels.")


def label_key(key):
    """Swarm matches only node.*/engine.* keys; a bare key means a node label."""
    if key.startswith(("node.", "engine.")):
        return key
    return f"node.labels.{key}"


def parse_constraint(text):
    op = next((op for op in CONSTRAINT_OPERATORS if op in text), None)
    if op is None:
        raise ValueError(f"bad constraint {text!r}, expected key==value or key!=value")
    key, value = (part.strip() for part in text.split(op, 1))
    full = label_key(key)
    if not key or not _CONSTRAINT_KEY.fullmatch(full):
        raise ValueError(f"bad constraint key {key!r} in {text!r}: ASCII letters, digits, "
                         "'_', '.' and '-', starting with a letter or '_'")
    lowered = full.lower()
    if not (lowered in NODE_KEYS or any(lowered.startswith(p) and len(full) > len(p)
                                        for p in LABEL_PREFIXES)):
        raise ValueError(f"bad constraint key {key!r} in {text!r}: swarm knows "
                         f"{', '.join(NODE_KEYS)}, node.labels.<label>, engine.labels.<label> "
                         "or a bare <label> (a node label)")
    if not _CONSTRAINT_VALUE.fullmatch(value):
        raise ValueError(f"bad constraint value {value!r} in {text!r}: ASCII letters, digits, "
                         "spaces and :-_.*()?+[]\\^$|/ (no '=', ',', '<', '>' or '~')")
    if lowered == "node.ip":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"bad constraint value {value!r} in {text!r}: node.ip takes an "
                             "IP address or a CIDR subnet") from None
    return f"{full}{op}{value}"


def parse_constraints(text):
    return tuple(parse_constraint(item) for item in split_list(text, ","))


def colon_pairs(text, what, expected, left_ok=bool):
    """'a:b, c:d' -> [('a', 'b'), ('c', 'd')]; ValueError for an item that is
    not two non-empty parts around ':' (or whose left part left_ok refuses)."""
    result = []
    for item in split_list(text, ","):
        left, sep, right = (part.strip() for part in item.partition(":"))
        if not sep or not left_ok(left) or not right:
            raise ValueError(f"bad {what} {item!r}, expected {expected}")
        result.append((left, right))
    return result


def parse_preferences(text):
    """'spread:node.labels.zone' -> (('spread', 'node.labels.zone'),)."""
    pairs = colon_pairs(text, "preference", "spread:<label>", lambda s: s.lower() == "spread")
    return tuple(("spread", label_key(descriptor)) for _, descriptor in pairs)


# Swarm's scheduler compares a platform with the node's as written
# (swarmkit manager/scheduler/filter.go, PlatformFilter.platformEqual: only
# x86_64/amd64 and aarch64/arm64 are made equal), and nodes report theirs
# lowercase, as Go's GOARCH/GOOS spell them: "AMD64:Linux" matches no node.
_PLATFORM_WORD = re.compile(r"[a-z0-9_]+")
OPERATING_SYSTEMS = ("linux", "windows")


def parse_platforms(text):
    """'amd64:linux' -> (('amd64', 'linux'),)."""
    pairs = colon_pairs(text, "platform", "arch:os")
    for arch, os_name in pairs:
        item = f"{arch}:{os_name}"
        if os_name.lower() not in OPERATING_SYSTEMS and arch.lower() in OPERATING_SYSTEMS:
            raise ValueError(f"bad platform {item!r}: the architecture comes first, "
                             f"write {os_name.lower()}:{arch.lower()}")
        if not (_PLATFORM_WORD.fullmatch(arch) and _PLATFORM_WORD.fullmatch(os_name)):
            hint = item.lower()
            suggestion = (f", write {hint}" if all(_PLATFORM_WORD.fullmatch(w)
                                                   for w in hint.split(":")) else "")
            raise ValueError(f"bad platform {item!r}: swarm nodes report lowercase "
                             f"letters, digits and '_'{suggestion}")
    return tuple(pairs)


_SUFFIX = re.compile(r"[A-Za-z0-9_.]+")

# Image references as swarm checks them (manager/controlapi: validateImage
# calls distribution's reference.ParseNormalizedNamed), mirrored from
# github.com/distribution/reference regexp.go, normalize.go and reference.go:
# path components are lowercase, [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*;
# a domain (hostname, IPv4 or [IPv6], optional :port) comes first only when
# the first component has a '.' or ':', is "localhost" or is not lowercase;
# the tag is [\w][\w.-]{0,127}; a digest is algorithm:hex, and go-digest
# knows sha256, sha384 and sha512 (64, 96, 128 lowercase hex digits).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = (rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
           r"(?::[0-9]+)?")
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
IMAGE_FORMS = ("an image reference like jupyter/base-notebook:notebook-6.5.4 or "
               "registry:5000/team/image@sha256:<64 hex digits> (lowercase repository)")


def parse_image(text):
    """An image reference as swarm accepts it (ValueError if not); unchanged."""
    if re.fullmatch(r"[a-f0-9]{64}", text):
        raise ValueError("a 64-digit hexadecimal image ID is not a reference")
    first, slash, rest = text.partition("/")
    if slash and (first == "localhost" or any(c in first for c in ".:") or first.lower() != first):
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", text
    repository = remainder.split(":", 1)[0]
    if repository.lower() != repository:
        raise ValueError(f"the repository name {repository!r} must be lowercase")
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if not match:
        raise ValueError(f"{text!r} is not an image reference")
    if len(match.group("path")) > 255:
        raise ValueError("the repository name is longer than 255 characters")
    if match.group("digest"):
        algorithm, _, encoded = match.group("digest").partition(":")
        if len(encoded) != _DIGEST_LENGTHS.get(algorithm) or encoded.lower() != encoded:
            raise ValueError(f"bad digest {match.group('digest')!r}: sha256:, sha384: or "
                             "sha512: and 64, 96 or 128 lowercase hex digits")
    return text


KEY_FORMS = "ASCII letters, digits, '_' and '.'"


def _rule_key(key, item, what):
    if not _SUFFIX.fullmatch(key):
        raise ValueError(f"bad {what} {key!r} in {item!r}: {KEY_FORMS}")
    return key.lower()


def parse_suffix_images(text, what="suffix"):
    """'base:a==1,b==2->img:tag;torch->reg:5000/x' -> {suffix: SuffixRule},
    in the order given. `what` names the keys in errors (suffix, profile):
    SPAWNER_PROFILES is written the same way."""
    rules = {}
    for item in split_list(text, ";"):
        left, sep, image = item.partition("->")
        image = image.strip()
        suffix, _, constraints = (part.strip() for part in left.partition(":"))
        if not sep or not image:
            raise ValueError(f"bad rule {item!r}")
        key = _rule_key(suffix, item, what)
        try:
            parse_image(image)
        except ValueError as e:
            raise ValueError(f"bad image in rule {item!r}: {e}") from None
        if key in rules:
            raise ValueError(f"{what} {suffix!r} given twice")
        rules[key] = SuffixRule(image, parse_constraints(constraints))
    return rules


def parse_key_values(text, what, value_parser):
    """'a->x;b->y' -> {a: value_parser(x), b: ...}; keys as rule keys, each once."""
    values = {}
    for item in split_list(text, ";"):
        key, sep, value = (part.strip() for part in item.partition("->"))
        if not sep:
            raise ValueError(f"bad rule {item!r}")
        lowered = _rule_key(key, item, what)
        if lowered in values:
            raise ValueError(f"{what} {key!r} given twice")
        values[lowered] = value_parser(value, item)
    return values


def _gpus_of(value, item):
    return parse_gpus(value)


def parse_suffix_gpus(text, what="suffix"):
    """'torch->1;big->device_id=0,1' -> {suffix: Gpu}."""
    return parse_key_values(text, what, _gpus_of)


def merge_gpu_rules(image_rules, gpu_rules, what="suffix"):
    """Attach SPAWNER_CONSTRAINT_WITH_GPUS to SPAWNER_CONSTRAINT_IMAGES rules
    (SPAWNER_PROFILE_GPUS to SPAWNER_PROFILES)."""
    unknown = sorted(set(gpu_rules) - set(image_rules))
    if unknown:
        raise ValueError(f"no image rule for {what} {', '.join(unknown)}")
    return {
        suffix: SuffixRule(rule.image, rule.constraints, gpu_rules.get(suffix))
        for suffix, rule in image_rules.items()
    }


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
    if {key.lower() for key, _ in parse_qsl(parts.query)} & {"password", "passwd"}:
        # JupyterHub logs the URL (debug level, upgrades) masking only the
        # user part: a password in the query would be in its log
        raise ValueError("a password in the query is not accepted: put it in the URL as "
                         "postgresql://user:password@host/db (percent-encoded), or give the "
                         "whole URL in a file with HUB_DB_URL_FILE")
    credentials = split_credentials(url)
    if scheme != "sqlite" and credentials and any(c in credentials[1] for c in "@/?#"):
        # SQLAlchemy would cut the password there and connect elsewhere
        raise ValueError("the user name or password contains '@', '/', '?' or '#': "
                         "percent-encode them (%40, %2F, %3F, %23)")
    return scheme + url[len(parts.scheme):]


# A host name (RFC 1123 labels, as swarm service names are) or an IP address.
HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
HOST_FORMS = "a host name or IP address, without scheme or port (the port is HUB_HUB_PORT)"


def parse_host(host):
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if len(host) > 253 or not HOST_NAME.fullmatch(host):
        raise ValueError("not a host name")
    return host


def parse_http_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s):// URL")
    parts.port  # raises ValueError on a bad port
    return url


# --------------------------------------------------------------------------
# Proxy: started by the hub, or an external configurable-http-proxy
# --------------------------------------------------------------------------

# The hub's own port defaults to 8001, configurable-http-proxy's API port
# too: the built-in proxy's API moves to 127.0.0.1:8081.
BUILTIN_PROXY_API_PORT = 8081

PROXY = [
    ("PROXY_SHOULD_START", boolean, True, None),
    ("CONFIGPROXY_AUTH_TOKEN", secret, None, None),
]


def update_proxy(c, env):
    v = apply(c, env, PROXY)
    proxy = c.ConfigurableHTTPProxy
    c.JupyterHub.proxy_class = SwarmProxy
    token = v["CONFIGPROXY_AUTH_TOKEN"]
    if v["PROXY_SHOULD_START"]:
        proxy.api_url = f"http://127.0.0.1:{BUILTIN_PROXY_API_PORT}"
        if token:
            proxy.auth_token = token
        return
    why = "required when PROXY_SHOULD_START is false"
    proxy.should_start = False
    proxy.api_url = env.parsed(
        "PROXY_API_URL", parse_http_url, "an http(s)://host:port URL"
    ) or env.str("PROXY_API_URL", required_because=why)
    if not token:
        raise ConfigError("CONFIGPROXY_AUTH_TOKEN", "", f"a value ({why})", secret=True)
    proxy.auth_token = token


# --------------------------------------------------------------------------
# Hub
# --------------------------------------------------------------------------

DB_FORMS = "sqlite:///<path>, postgresql://..., postgres://..., mysql://... or mysql+pymysql://..."
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

HUB = [
    ("HUB_HUB_PORT", port, 8001, "JupyterHub.hub_port"),
    ("HUB_CONNECT_IP", text, "jupyterhub", "JupyterHub.hub_connect_ip"),
    ("HUB_API_RELAY", rule(parse_host, HOST_FORMS), None, None),
    ("HUB_PORT", port, 8000, "JupyterHub.port"),
    ("HUB_SSL_KEY", text, None, None),
    ("HUB_SSL_CERT", text, None, None),
    ("HUB_COOKIE_SECRET_FILE", text, "/data/jupyterhub_cookie_secret",
     "JupyterHub.cookie_secret_file"),
    ("HUB_DB_URL", rule(parse_db_url, DB_FORMS, secret=mask_url),
     "sqlite:////data/jupyterhub.sqlite", "JupyterHub.db_url"),
    ("HUB_ACTIVE_SERVER_LIMIT", integer, 100, "JupyterHub.active_server_limit"),
    ("HUB_ACTIVE_USER_WINDOW", integer, 1800, "JupyterHub.active_user_window"),
    ("HUB_ACTIVITY_RESOLUTION", integer, 30, "JupyterHub.activity_resolution"),
    ("HUB_CONCURRENT_SPAWN_LIMIT", integer, 20, "JupyterHub.concurrent_spawn_limit"),
    ("HUB_ALLOW_NAMED_SERVERS", boolean, False, "JupyterHub.allow_named_servers"),
    ("HUB_NAMED_SERVER_LIMIT_PER_USER", integer, 0, "JupyterHub.named_server_limit_per_user"),
    ("HUB_INTERNAL_SSL_PATH", text, None, None),
    ("HUB_INIT_SPAWNERS_TIMEOUT", integer, 60, "JupyterHub.init_spawners_timeout"),
    ("HUB_LOG_LEVEL", one_of(*LOG_LEVELS), "info", None),
    ("HUB_UPGRADE_DB", boolean, False, "JupyterHub.upgrade_db"),
    ("HUB_CULL_IDLE_TIMEOUT", integer, 0, None),
    ("HUB_CULL_EVERY", integer, 0, None),
    ("HUB_CULL_MAX_AGE", integer, 0, None),
    ("HUB_METRICS_TOKEN", secret, None, None),
]


def update_hub(c, env):
    v = apply(c, env, HUB)
    hub = c.JupyterHub
    hub_port, public_port = v["HUB_HUB_PORT"], v["HUB_PORT"]
    if public_port in (8001, BUILTIN_PROXY_API_PORT) or public_port == hub_port:
        raise ConfigError(
            "HUB_PORT", str(public_port),
            f"a port other than 8001, 8081 and HUB_HUB_PORT ({hub_port})",
        )
    if c.ConfigurableHTTPProxy.get("should_start", True) and hub_port == BUILTIN_PROXY_API_PORT:
        raise ConfigError(
            "HUB_HUB_PORT", str(hub_port),
            "a port other than 8081 (the built-in proxy's API port)",
        )
    hub.hub_ip = "0.0.0.0"
    hub.log_level = v["HUB_LOG_LEVEL"].upper()
    # the log written off the event loop (QueuedStreamHandler)
    hub.logging_config = {"handlers": {"console": {
        "class": "jupyterhub_swarm.QueuedStreamHandler"}}}
    # a database that stops answering must not freeze the hub
    connect_args = db_connect_args(v["HUB_DB_URL"])
    if connect_args:
        hub.db_kwargs = {"connect_args": connect_args}
    # User servers outlive the hub: a hub restart must not stop them.
    hub.cleanup_servers = False
    # Names of swarm services (the proxy) resolved anew at each connection:
    # they move to a new address when their task restarts (FreshResolver).
    c.JupyterHubHTTPClient.connector_options = {"resolver": FreshResolver(),
                                                "use_dns_cache": False}

    ssl_key, ssl_cert = v["HUB_SSL_KEY"], v["HUB_SSL_CERT"]
    if bool(ssl_key) != bool(ssl_cert):
        missing = "HUB_SSL_CERT" if ssl_key else "HUB_SSL_KEY"
        raise ConfigError(missing, "", "a path, since HUB_SSL_KEY and HUB_SSL_CERT go together")
    if ssl_key:
        hub.ssl_key, hub.ssl_cert = ssl_key, ssl_cert

    internal_ssl_path = v["HUB_INTERNAL_SSL_PATH"]
    relay = v["HUB_API_RELAY"]
    if relay:
        # Servers cache the hub's address (jupyterhub-singleuser 6.x: for
        # docker's TTL of 600 s); the relay keeps one address and follows
        # the hub to its new one at once (docker-compose.swarm.yml, hub-relay).
        scheme = "https" if internal_ssl_path else "http"
        c.Spawner.hub_connect_url = f"{scheme}://{url_host(relay)}:{hub_port}"
    if internal_ssl_path:
        update_internal_ssl(c, internal_ssl_path, relay)
    cull_timeout = v["HUB_CULL_IDLE_TIMEOUT"]
    if cull_timeout:
        update_culler(c, cull_timeout, v["HUB_CULL_EVERY"], v["HUB_CULL_MAX_AGE"],
                      hub_port, internal_ssl_path)
    if v["HUB_METRICS_TOKEN"]:
        update_metrics(c, v["HUB_METRICS_TOKEN"])


def add_service(c, service, role):
    """A hub service and its role, beside those set before."""
    hub = c.JupyterHub
    hub.services = list(hub.get("services", [])) + [service]
    hub.load_roles = list(hub.get("load_roles", [])) + [role]


# Tokens JupyterHub takes are 8 characters at least; a metrics token is
# written into Prometheus' configuration: ask for a real one.
METRICS_TOKEN_MIN = 16
METRICS_SERVICE = "prometheus"


def update_metrics(c, token):
    """/hub/metrics for a scraper: a service `prometheus` with this token
    and a role of the read:metrics scope only (no access to users or
    servers). JupyterHub answers 403 without it."""
    if len(token) < METRICS_TOKEN_MIN or not token.isprintable() or any(
            ch.isspace() for ch in token):
        raise ConfigError("HUB_METRICS_TOKEN", token,
                          f"at least {METRICS_TOKEN_MIN} printable characters without spaces, "
                          "like the output of `openssl rand -hex 32`", secret=True)
    add_service(c, {"name": METRICS_SERVICE, "api_token": token},
                {"name": "metrics", "scopes": ["read:metrics"], "services": [METRICS_SERVICE]})


def url_host(host):
    return f"[{host}]" if ":" in host else host


def update_internal_ssl(c, path, relay=None):
    """Hub, proxy and user servers verify each other with certificates from
    CAs JupyterHub keeps in `path`. The names they reach each other by go
    into the certificates; the proxy's API then speaks HTTPS only."""
    if not os.path.isabs(path):
        raise ConfigError("HUB_INTERNAL_SSL_PATH", path, "an absolute path in the hub's container")
    hub, proxy = c.JupyterHub, c.ConfigurableHTTPProxy
    hub.internal_ssl = True
    hub.internal_certs_location = path
    api_url = urlsplit(proxy.api_url)
    if api_url.scheme == "http":
        proxy.api_url = api_url._replace(scheme="https").geturl()
    names = []
    for host in (hub.hub_connect_ip, relay, api_url.hostname):
        if not host:
            continue
        try:
            kind = "IP" if ipaddress.ip_address(host) else "DNS"
        except ValueError:
            kind = "DNS"
        if f"{kind}:{host}" not in names:
            names.append(f"{kind}:{host}")
    hub.trusted_alt_names = names


def renew_hub_cert(path, names):
    """A hub certificate from before a name was added (HUB_API_RELAY, a new
    HUB_CONNECT_IP) is signed again, by the same CA, with every name."""
    missing = renew_hub_certificate(path, names)
    if missing:
        print(f"jupyterhub_config: the hub's certificate in {path} lacked {', '.join(missing)}: "
              "JupyterHub signs a new one with its CA (the servers' and the proxy's stay valid)",
              flush=True)


def update_culler(c, timeout, every, max_age, hub_port, internal_ssl_path):
    """Idle culling (opt-in): a hub-managed jupyterhub-idle-culler service.
    It runs in the hub's container and asks the hub's API there, not by the
    hub's swarm name, which resolves only once the hub is healthy (JupyterHub
    starts its services before that)."""
    scheme = "https" if internal_ssl_path else "http"
    command = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={timeout}",
               f"--url={scheme}://127.0.0.1:{hub_port}/hub/api"]
    if every:
        command.append(f"--cull-every={every}")
    if max_age:
        command.append(f"--max-age={max_age}")
    if internal_ssl_path:  # the hub's API then speaks TLS only
        command += ["--ssl-enabled=true", f"--internal-certs-location={internal_ssl_path}"]
    add_service(c, {"name": "idle-culler", "command": command}, {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    })


# --------------------------------------------------------------------------
# Spawner: one swarm service per user
# --------------------------------------------------------------------------

SPAWNER = [
    ("SPAWNER_NOTEBOOK_IMAGE", rule(parse_image, IMAGE_FORMS),
     "jupyter/base-notebook:notebook-6.5.4", "SwarmUserSpawner.image"),
    ("SPAWNER_PULL_POLICY", one_of("ifnotpresent", "always", "never", "skip"), "ifnotpresent",
     "SwarmUserSpawner.pull_policy"),
    ("SPAWNER_PREPULL", boolean, True, "SwarmUserSpawner.prepull"),
    ("SPAWNER_NETWORK_NAME", required("the overlay network user servers join"), None,
     "SwarmUserSpawner.network_name"),
    ("SPAWNER_NOTEBOOK_DIR", text, "/home/jovyan/work", "SwarmUserSpawner.notebook_dir"),
    ("SPAWNER_ENVIRONMENT", rule(parse_env_pairs, "NAME:value pairs separated by ';'"), {},
     "SwarmUserSpawner.environment"),
    ("SPAWNER_ENDPOINT_MODE", one_of("vip", "dnsrr"), None, None),
    ("SPAWNER_SPAWN_CMD", rule(parse_command, "a command line"), ["start-singleuser.sh"],
     "SwarmUserSpawner.cmd"),
    ("SPAWNER_REMOVE", boolean, True, None),
    ("SPAWNER_DEBUG", boolean, True, "SwarmUserSpawner.debug"),
    ("SPAWNER_CONSECUTIVE_FAILURE_LIMIT", integer, 0,
     "SwarmUserSpawner.consecutive_failure_limit"),
    ("SPAWNER_POLL_INTERVAL", integer, 30, "SwarmUserSpawner.poll_interval"),
    ("SPAWNER_START_TIMEOUT", positive, 120, "SwarmUserSpawner.start_timeout"),
    # JupyterHub's 30 s: a class starting at once on a small swarm is slower
    # (docs/performance.md, "A class starting at once")
    ("SPAWNER_HTTP_TIMEOUT", positive, 120, "SwarmUserSpawner.http_timeout"),
    ("SPAWNER_RESOURCE_WAIT", integer, 60, "SwarmUserSpawner.resource_wait"),
    # the stack file sets it ({{.Service.Name}})
    ("HUB_SERVICE_NAME", text, "", "SwarmUserSpawner.hub_name"),
]


def update_spawner(c, env):
    v = apply(c, env, SPAWNER)
    spawner = c.SwarmUserSpawner
    c.JupyterHub.spawner_class = SwarmUserSpawner
    spawner.use_internal_ip = True
    if not v["SPAWNER_NOTEBOOK_DIR"].startswith("/"):
        raise ConfigError("SPAWNER_NOTEBOOK_DIR", v["SPAWNER_NOTEBOOK_DIR"], "an absolute path")
    mode = v["SPAWNER_ENDPOINT_MODE"]
    spawner.extra_endpoint_spec = {"mode": mode} if mode else {}
    if not v["SPAWNER_REMOVE"]:
        # Swarm always removes a stopped user's service; only the persistent
        # volume survives a stop, whatever this says.
        print("jupyterhub_config: SPAWNER_REMOVE=false has no effect on swarm")
    update_storage(c, env, v["SPAWNER_NOTEBOOK_DIR"])
    update_resources(c, env)
    update_placement(c, env)
    update_profiles(c, env)


# -- Storage: one swarm volume per user --------------------------------------

VOLUME_TYPES = ("local", "nfs3", "nfs4", "cifs")
STORAGE = [
    ("SPAWNER_PERSISTENCE_VOLUME_TYPE", one_of(*VOLUME_TYPES), "local", None),
    ("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", text, "jupyterhub-user-{username}", None),
    ("SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH", text, "/persistence", None),
    ("SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH", text, "/jupyterhub_data", None),
    ("SPAWNER_PERSISTENCE_VOLUME_OWNER", text, "1000:100", None),
]
# Read only for their volume type (docs/reference.md: required or defaulted per type).
DEFAULT_OPTS = {
    "nfs3": ",rw,vers=3,nolock,soft",
    "nfs4": ",rw,nfsvers=4,async",
    "cifs": ",file_mode=0777,dir_mode=0777",
}


def update_storage(c, env, notebook_dir):
    v = apply(c, env, STORAGE)
    kind = v["SPAWNER_PERSISTENCE_VOLUME_TYPE"]
    source_name = v["SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME"]
    subpath = v["SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH"]
    if not subpath.startswith("/"):
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_TARGET_SUBPATH", subpath,
                          "a path starting with '/'")
    owner = re.fullmatch(r"(\d+):(\d+)", v["SPAWNER_PERSISTENCE_VOLUME_OWNER"])
    if not owner:
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_OWNER",
                          v["SPAWNER_PERSISTENCE_VOLUME_OWNER"], "uid:gid, like 1000:100")
    host = device = opts = root = ""
    if kind in ("nfs3", "nfs4"):
        why = f"required when SPAWNER_PERSISTENCE_VOLUME_TYPE is {kind}"
        host = env.str("SPAWNER_PERSISTENCE_NFS_HOST", required_because=why)
        device = env.str("SPAWNER_PERSISTENCE_NFS_DEVICE", required_because=why)
        opts = env.str("SPAWNER_PERSISTENCE_NFS_OPTS", DEFAULT_OPTS[kind])
        if not device.lstrip(":").startswith("/"):
            raise ConfigError("SPAWNER_PERSISTENCE_NFS_DEVICE", device, "a path like :/export/dir")
        root = env.str("SPAWNER_PERSISTENCE_NFS_ROOT", "")
    elif kind == "cifs":
        why = "required when SPAWNER_PERSISTENCE_VOLUME_TYPE is cifs"
        host = env.str("SPAWNER_PERSISTENCE_CIFS_HOST", required_because=why)
        device = env.str("SPAWNER_PERSISTENCE_CIFS_DEVICE", required_because=why)
        opts = env.str("SPAWNER_PERSISTENCE_CIFS_OPTS", DEFAULT_OPTS["cifs"], secret=True)
        root = env.str("SPAWNER_PERSISTENCE_CIFS_ROOT", "")
    if opts and not opts.startswith(","):
        opts = "," + opts
    storage = Storage(
        type=kind,
        source_name=source_name,
        target=notebook_dir.rstrip("/") + subpath,
        mkdir_root=v["SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH"],
        owner=(int(owner.group(1)), int(owner.group(2))),
        host=host,
        device=device,
        opts=opts,
        root=root,
    )
    # Check the templates now, with sample names, not at a user's first spawn.
    sample, other = "sample-2duser", "other-2duser"
    volume_forms = "a docker volume name holding {username}, like jupyterhub-user-{username}"
    try:
        names = {storage_mount(Storage("local", source_name, storage.target, "", (0, 0)),
                               user)["source"] for user in (sample, other)}
    except ValueError as e:
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", source_name,
                          f"{volume_forms} ({e})") from None
    if len(names) == 1:  # one volume for everybody: each user would see the others' files
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_SOURCE_NAME", source_name,
                          f"{volume_forms} (without it every user mounts the same volume)")
    try:
        storage_mount(storage, sample)
    except ValueError as e:
        name = "SPAWNER_PERSISTENCE_%s_DEVICE" % ("CIFS" if kind == "cifs" else "NFS")
        raise ConfigError(name, device, f"a path, may contain {{username}} ({e})") from None
    if kind != "local":
        check_share_root(env, storage)
    c.SwarmUserSpawner.storage = storage


def check_share_root(env, storage):
    """The share's root (SPAWNER_PERSISTENCE_NFS_ROOT / _CIFS_ROOT), which
    docker-compose.nfs.yml / .cifs.yml mount into the hub at MKDIRPATH, must
    hold every user's directory: the device's part before {username}, or a
    directory above it. Defaults to that part (docs/storage.md)."""
    kind = "CIFS" if storage.type == "cifs" else "NFS"
    fixed = split_device(server_path(storage), "x")[0]
    env.record(f"SPAWNER_PERSISTENCE_{kind}_ROOT", share_root(storage))
    forms = (f"an absolute path on the server, {fixed} (the part of "
             f"SPAWNER_PERSISTENCE_{kind}_DEVICE before {{username}}) or a directory above it")
    if storage.root and (not storage.root.startswith("/") or ".." in storage.root.split("/")):
        raise ConfigError(f"SPAWNER_PERSISTENCE_{kind}_ROOT", storage.root, forms)
    if below_root(share_root(storage), fixed) is None:
        raise ConfigError(f"SPAWNER_PERSISTENCE_{kind}_ROOT", storage.root, forms)
    mkdir = storage.mkdir_root
    if not mkdir.startswith("/") or mkdir.rstrip("/") == "":
        raise ConfigError("SPAWNER_PERSISTENCE_VOLUME_MKDIRPATH", mkdir,
                          "an absolute path other than /, where the hub mounts the share's root")


# -- Resources: swarm limits and reservations (0: none) ----------------------

RESOURCES = [
    ("SPAWNER_CPU_LIMIT", cpus, 2.0, None),
    ("SPAWNER_CPU_GUARANTEE", cpus, 1.0, None),
    ("SPAWNER_MEM_LIMIT", memory, "4G", None),
    ("SPAWNER_MEM_GUARANTEE", memory, "1G", None),
]


def update_resources(c, env):
    v = apply(c, env, RESOURCES)
    cpu_limit, cpu_guarantee = v["SPAWNER_CPU_LIMIT"], v["SPAWNER_CPU_GUARANTEE"]
    mem_limit, mem_guarantee = v["SPAWNER_MEM_LIMIT"], v["SPAWNER_MEM_GUARANTEE"]
    if cpu_limit and cpu_guarantee > cpu_limit:
        raise ConfigError("SPAWNER_CPU_GUARANTEE", str(cpu_guarantee),
                          f"at most SPAWNER_CPU_LIMIT ({cpu_limit:g})")
    if mem_limit and mem_guarantee > mem_limit:
        raise ConfigError("SPAWNER_MEM_GUARANTEE", env.raw("SPAWNER_MEM_GUARANTEE") or "1G",
                          "at most SPAWNER_MEM_LIMIT")
    spawner = c.SwarmUserSpawner
    spawner.cpu_limit = cpu_limit or None
    spawner.cpu_guarantee = cpu_guarantee or None
    spawner.mem_limit = mem_limit or None
    spawner.mem_guarantee = mem_guarantee or None


# -- Placement, GPUs and username-suffix rules --------------------------------

PLACEMENT = [
    ("SPAWNER_USE_GPUS", rule(parse_gpus, GPU_FORMS), Gpu(), "SwarmUserSpawner.default_gpu"),
    ("SPAWNER_CONSTRAINTS", rule(parse_constraints, "key==value constraints separated by ','"),
     (), "SwarmUserSpawner.base_constraints"),
    ("SPAWNER_PREFERENCE", rule(parse_preferences, "spread:<label> separated by ','"), (), None),
    ("SPAWNER_PLATFORM", rule(parse_platforms, "arch:os pairs separated by ','"), (), None),
    ("SPAWNER_CONSTRAINT_IMAGES", rule(parse_suffix_images,
                                       "suffix[:constraint,...]->image rules separated by ';'"),
     {}, None),
    ("SPAWNER_CONSTRAINT_WITH_GPUS", rule(parse_suffix_gpus,
                                          f"suffix->gpus rules separated by ';' (gpus: {GPU_FORMS})"),
     {}, None),
]


def update_placement(c, env):
    v = apply(c, env, PLACEMENT)
    spawner = c.SwarmUserSpawner
    spawner.placement = Placement(preferences=v["SPAWNER_PREFERENCE"],
                                  platforms=v["SPAWNER_PLATFORM"])
    try:
        spawner.suffix_rules = merge_gpu_rules(v["SPAWNER_CONSTRAINT_IMAGES"],
                                               v["SPAWNER_CONSTRAINT_WITH_GPUS"])
    except ValueError as e:
        raise ConfigError(
            "SPAWNER_CONSTRAINT_WITH_GPUS", env.raw("SPAWNER_CONSTRAINT_WITH_GPUS"),
            f"suffixes that SPAWNER_CONSTRAINT_IMAGES has rules for ({e})",
        ) from None


# -- Profiles: the environment a user chooses at spawn time -------------------

def _words_of(value, item):
    if not value or not value.isprintable():
        raise ValueError(f"bad text in {item!r}: printable words, without ';'")
    return value


def _groups_of(value, item):
    groups = tuple(split_list(value, ","))
    if not groups or not all(g.isprintable() for g in groups):
        raise ValueError(f"bad groups in {item!r}: JupyterHub group names separated by ','")
    return groups


def parse_profile_names(text):
    return parse_key_values(text, "profile", _words_of)


def parse_profile_groups(text):
    return parse_key_values(text, "profile", _groups_of)


PROFILES = [
    ("SPAWNER_PROFILES", rule(lambda text: parse_suffix_images(text, "profile"),
                              "key[:constraint,...]->image profiles separated by ';'"), {}, None),
    ("SPAWNER_PROFILE_GPUS", rule(lambda text: parse_suffix_gpus(text, "profile"),
                                  f"key->gpus rules separated by ';' (gpus: {GPU_FORMS})"),
     {}, None),
    ("SPAWNER_PROFILE_NAMES", rule(parse_profile_names, "key->display name separated by ';'"),
     {}, None),
    ("SPAWNER_PROFILE_DESCRIPTIONS", rule(parse_profile_names,
                                          "key->description separated by ';'"), {}, None),
    ("SPAWNER_PROFILE_GROUPS", rule(parse_profile_groups,
                                    "key->group[,group...] separated by ';'"), {}, None),
    ("SPAWNER_PROFILE_DEFAULT", text, None, None),
]


def update_profiles(c, env):
    """Profiles are rules like the suffix rules, chosen at spawn time; every
    other profile variable names keys of SPAWNER_PROFILES."""
    v = apply(c, env, PROFILES)
    rules = v["SPAWNER_PROFILES"]
    keys = ", ".join(rules) or "none: SPAWNER_PROFILES is empty"
    for name in ("SPAWNER_PROFILE_GPUS", "SPAWNER_PROFILE_NAMES", "SPAWNER_PROFILE_DESCRIPTIONS",
                 "SPAWNER_PROFILE_GROUPS"):
        unknown = [k for k in v[name] if k not in rules]
        if unknown:
            raise ConfigError(name, env.raw(name),
                              f"keys of SPAWNER_PROFILES ({keys}); unknown: {', '.join(unknown)}")
    default = v["SPAWNER_PROFILE_DEFAULT"]
    if default is not None and default.lower() not in rules:
        raise ConfigError("SPAWNER_PROFILE_DEFAULT", default, f"a key of SPAWNER_PROFILES ({keys})")
    merged = merge_gpu_rules(rules, v["SPAWNER_PROFILE_GPUS"], "profile")
    names, descriptions = v["SPAWNER_PROFILE_NAMES"], v["SPAWNER_PROFILE_DESCRIPTIONS"]
    c.SwarmUserSpawner.profiles = tuple(
        Profile(key, rule_, names.get(key, ""), descriptions.get(key, ""),
                v["SPAWNER_PROFILE_GROUPS"].get(key, ()))
        for key, rule_ in merged.items())
    c.SwarmUserSpawner.default_profile = (default or next(iter(rules), "")).lower()


# --------------------------------------------------------------------------
# Auth: NativeAuthenticator
# --------------------------------------------------------------------------

def password_length(env, name, default):
    """At most bcrypt's limit: a longer minimum would refuse every password."""
    return env.int(name, default, maximum=PASSWORD_MAX_BYTES)


AUTH = [
    ("AUTH_ADMIN_USER", text, "admin", None),
    ("AUTH_CHECK_COMMON_PASSWORD", boolean, False,
     "SwarmNativeAuthenticator.check_common_password"),
    ("AUTH_MINIMUM_PASSWORD_LENGTH", password_length, 6,
     "SwarmNativeAuthenticator.minimum_password_length"),
    ("AUTH_ALLOWED_FAILED_LOGINS", integer, 3, "SwarmNativeAuthenticator.allowed_failed_logins"),
    ("AUTH_SECONDS_BEFORE_NEXT_TRY", integer, 1200,
     "SwarmNativeAuthenticator.seconds_before_next_try"),
    ("AUTH_ENABLE_SIGNUP", boolean, True, "SwarmNativeAuthenticator.enable_signup"),
    ("AUTH_OPEN_SIGNUP", boolean, False, "SwarmNativeAuthenticator.open_signup"),
    ("AUTH_ADMIN_PASSWORD", secret, None, "SwarmNativeAuthenticator.admin_password"),
    ("AUTH_USERNAME_PATTERN", text, DEFAULT_USERNAME_PATTERN, None),
]


def update_auth(c, env):
    v = apply(c, env, AUTH)
    c.JupyterHub.authenticator_class = SwarmNativeAuthenticator
    # NativeAuthenticator's page.html adds "Authorize Users" (admins) and
    # "Change Password" to the navigation bar, but only when its templates
    # come before JupyterHub's: without this, no hub page links to
    # /hub/authorize. The image's own (templates/: the approval page with
    # POST forms) come first.
    c.JupyterHub.template_paths = [SWARM_TEMPLATES, NATIVE_TEMPLATES]
    admins = split_list(v["AUTH_ADMIN_USER"], ",")
    c.Authenticator.admin_users = set(admins)
    # JupyterHub 5 allows nobody by default; NativeAuthenticator's own
    # approval step is what decides who may log in.
    c.Authenticator.allow_all = True
    pattern = v["AUTH_USERNAME_PATTERN"]
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ConfigError("AUTH_USERNAME_PATTERN", pattern, f"a regular expression ({e})") from None
    if not all(compiled.fullmatch(a.lower()) and printable_name(a) for a in admins):
        raise ConfigError("AUTH_ADMIN_USER", ",".join(admins),
                          f"names matching AUTH_USERNAME_PATTERN ({pattern}), "
                          "without control or invisible characters")
    # JupyterHub only anchors the start (re.match): anchor the end too.
    c.Authenticator.username_pattern = anchored(pattern)
    password, minimum = v["AUTH_ADMIN_PASSWORD"], v["AUTH_MINIMUM_PASSWORD_LENGTH"]
    if password is not None and len(password) < minimum:
        raise ConfigError("AUTH_ADMIN_PASSWORD", password,
                          f"at least AUTH_MINIMUM_PASSWORD_LENGTH ({minimum}) characters",
                          secret=True)
    if password is not None and password_too_long(password):
        # the value is a secret: its length only
        raise ConfigError("AUTH_ADMIN_PASSWORD", password,
                          f"at most {PASSWORD_MAX_BYTES} bytes in UTF-8, bcrypt's limit "
                          f"(it has {len(password.encode('utf-8', 'surrogatepass'))})", secret=True)


# --------------------------------------------------------------------------
# Extra configuration: the operator's own files, after everything above
# --------------------------------------------------------------------------

EXTRA_CONFIG = [
    ("HUB_EXTRA_CONFIG_DIR", text, "/srv/jupyterhub/jupyterhub_config.d", None),
]


def extra_config_files(directory):
    """The *.py files of `directory` in name order (none if it is missing)."""
    name = "HUB_EXTRA_CONFIG_DIR"
    if not os.path.isabs(directory):
        raise ConfigError(name, directory, "an absolute path in the hub's container")
    if not os.path.lexists(directory):
        return []
    if not os.path.isdir(directory):
        raise ConfigError(name, directory, "a directory of *.py files (this is not a directory)")
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise ConfigError(name, directory, f"a readable directory ({e.strerror})") from None
    paths = [os.path.join(directory, n) for n in names
             if n.endswith(".py") and not n.startswith(".")]
    return [p for p in paths if os.path.isfile(p)]


def update_extra_config(c, env):
    """JupyterHub settings the image has no variable for: each *.py file of
    HUB_EXTRA_CONFIG_DIR, in name order, runs with `c` as this file does, so
    a later file overrides an earlier one and every file overrides the
    variables. Nothing checks what they set."""
    directory = apply(c, env, EXTRA_CONFIG)["HUB_EXTRA_CONFIG_DIR"]
    for path in extra_config_files(directory):
        run_config_file(c, path, "HUB_EXTRA_CONFIG_DIR")
        print(f"jupyterhub_config: loaded {path} (HUB_EXTRA_CONFIG_DIR)", flush=True)


# --------------------------------------------------------------------------
# All of it
# --------------------------------------------------------------------------

TABLES = (PROXY, HUB, SPAWNER, STORAGE, RESOURCES, PLACEMENT, PROFILES, AUTH, EXTRA_CONFIG)


def configure(c, env):
    """Fill the JupyterHub config `c` from `env` (an Env), then run the
    operator's files (HUB_EXTRA_CONFIG_DIR); contacts nothing itself."""
    update_proxy(c, env)
    update_hub(c, env)
    update_spawner(c, env)
    update_auth(c, env)
    update_extra_config(c, env)
    return c


if "get_config" in globals():  # loaded by jupyterhub
    c = get_config()  # noqa: F821
    configure(c, Env(os.environ))
    if running_hub():  # every variable is valid: now the database
        check_database(c.JupyterHub.db_url, c.JupyterHub.upgrade_db)
        if c.JupyterHub.get("internal_ssl"):
            renew_hub_cert(c.JupyterHub.internal_certs_location, c.JupyterHub.trusted_alt_names)
elif __name__ == "__main__":  # the check command
    from traitlets.config import Config

    env = Env(os.environ)
    sys.exit(check_main(sys.argv[1:], configure(Config(), env), env.report, SECRET_FILES))
