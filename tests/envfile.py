"""The documentation's own example settings, and env files made of them,
for the tests of the documented env-file workflow (tests/unit/test_env_file.py,
tests/e2e/test_14_env_file.py). The values are read from the docs pages
(docs/user-environment.md, docs/reference.md) and the file from example.env
each time, never copied into a test."""

import re
import shlex
from pathlib import Path

from docpages import page, path, section

ROOT = Path(__file__).resolve().parents[1]
SETUP = path("setup")  # "Settings in a file": the deploy command
EXAMPLE_ENV = ROOT / "example.env"


def documented_example_values():
    """{name: value} of the documentation's examples: every `NAME=value`
    code span of "Placement and username-suffix rules" (docs/user-environment.md,
    which writes some with shell quotes, for a shell: unquoted here as the
    shell would), and the example in the Accepted column of
    SPAWNER_ENVIRONMENT in docs/reference.md (`A:1;B:2`)."""
    values = {}
    for span in re.findall(r"`([A-Z][A-Z0-9_]*=[^`]*)`",
                           section("user-environment", "## Placement and username-suffix rules")):
        (word,) = shlex.split(span)
        name, value = word.split("=", 1)
        values.setdefault(name, value)
    row = re.search(r"^\| `SPAWNER_ENVIRONMENT` \|[^|]*\|[^|]*\| `([^`]+)`", page("reference"),
                    re.M)
    values["SPAWNER_ENVIRONMENT"] = row.group(1)
    # the values that broke `set -a; . ./example.env` must be among them
    assert "->" in values["SPAWNER_CONSTRAINT_IMAGES"], values
    assert ";" in values["SPAWNER_ENVIRONMENT"], values
    return values


def documented_command(text, marker):
    """The first line of `text` (a docs page, example.env) holding `marker`,
    from the marker on, a comment's `# ` removed."""
    for line in text.splitlines():
        if marker in line:
            return line[line.index(marker):].strip()
    raise AssertionError(f"no line with {marker!r}")


def env_file_text(values, base=None):
    """example.env (or `base`) with `values` set as an operator would:
    each `#NAME=default` line of a name in `values` replaced by NAME=value,
    in docker's --env-file format (no quotes); names example.env does not
    have are appended."""
    lines = (EXAMPLE_ENV.read_text(encoding="utf-8") if base is None else base).splitlines()
    left = dict(values)
    out = []
    for line in lines:
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=", line)
        if m and m.group(1) in left:
            name = m.group(1)
            line = f"{name}={left.pop(name)}"
        out.append(line)
    out += [f"{name}={value}" for name, value in left.items()]
    return "\n".join(out) + "\n"


def active_values(text):
    """{name: value} of an env file's NAME=value lines (no comments, no
    blank lines; what docker --env-file gives for such a file)."""
    return dict(line.split("=", 1) for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#"))
