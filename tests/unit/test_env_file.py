"""One env file for the stack and for the check: example.env's header says
how to deploy with it, and that way must hand the stack exactly the values
that `docker run --env-file` hands the check (tests/e2e/test_14_env_file.py
does both for real). The values are the documentation's own examples, which
the shell mangles: `->` is a redirection, `;` ends a command."""

import json
import os
import subprocess
import sys

from envfile import (EXAMPLE_ENV, ROOT, active_values, documented_command, env_file_text,
                     documented_example_values)

DUMP = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
STACK_DEPLOY = "docker stack deploy"


def clean_environ():
    """The calling environment without the hub's variables."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PROXY_", "CONFIGPROXY_", "HUB_", "SPAWNER_", "AUTH_"))}


def run_documented_loader(env_file, cwd):
    """example.env's documented way to deploy ("Use it with the stack: ..."),
    with `docker stack deploy ...` replaced by a dump of the environment the
    deploy would get, run in bash on `env_file`."""
    command = documented_command(EXAMPLE_ENV.read_text(), "Use it with the stack: ")
    command = command.removeprefix("Use it with the stack: ")
    assert STACK_DEPLOY in command, command
    loader = command[:command.index(STACK_DEPLOY)]
    loader = (loader.replace("./example.env", str(env_file)).replace("example.env", str(env_file))
              .replace("scripts/", f"{ROOT}/scripts/"))
    script = loader + " ".join(f"'{word}'" for word in DUMP)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=clean_environ(),
                          capture_output=True, text=True, timeout=60)


def test_the_documented_way_gives_the_documented_values_unchanged(tmp_path):
    values = documented_example_values()
    text = env_file_text(values)
    env_file = tmp_path / "my.env"
    env_file.write_text(text)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = run_documented_loader(env_file, work)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = active_values(text)
    assert {k: got.get(k) for k in expected} == expected
    assert proc.stderr == ""
    assert list(work.iterdir()) == [], "the loader wrote files (a value ran as a redirection)"


def test_sourcing_the_file_is_what_broke(tmp_path):
    """The former instruction, `set -a; . ./example.env; set +a`, on the same
    file: values cut at `->` and `;`, the rest run as commands or written
    to files, and still exit status 0."""
    values = documented_example_values()
    env_file = tmp_path / "my.env"
    env_file.write_text(env_file_text(values))
    work = tmp_path / "cwd"
    work.mkdir()
    script = f"set -a; . {env_file}; set +a; " + " ".join(f"'{w}'" for w in DUMP)
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=clean_environ(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    got = json.loads(proc.stdout)
    assert got["SPAWNER_ENVIRONMENT"] == "A:1" != values["SPAWNER_ENVIRONMENT"]
    assert got.get("SPAWNER_CONSTRAINT_IMAGES") != values["SPAWNER_CONSTRAINT_IMAGES"]
    assert "command not found" in proc.stderr
    assert [p.name for p in work.iterdir()] == ["1"]  # from torch->1


def with_env_file(tmp_path, text, **env):
    env_file = tmp_path / "t.env"
    env_file.write_bytes(text.encode() if isinstance(text, str) else text)
    return subprocess.run(["bash", str(ROOT / "scripts/with-env-file.sh"), str(env_file), *DUMP],
                          env={**clean_environ(), **env}, capture_output=True, text=True,
                          timeout=60)


def test_read_as_docker_reads_env_files(tmp_path):
    """docker run --env-file's rules (docker/cli opts.ParseEnvFile, checked
    by hand against docker 20.10 and 28): BOM, CR, leading whitespace,
    comments, the first `=`, values verbatim, a bare name from the caller."""
    text = (b"\xef\xbb\xbfA=1\n  # comment\n\n   B= x \nC=\"q\"\nD=a=b\r\nE\nF\n"
            b"G=$HOME ${X} `id`\n\tH=tab\nI=\nJ=#not a comment\nK=no newline")
    proc = with_env_file(tmp_path, text, E="from the caller")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert {k: got.get(k) for k in "ABCDEFGHIJK"} == {
        "A": "1", "B": " x ", "C": '"q"', "D": "a=b", "E": "from the caller", "F": None,
        "G": "$HOME ${X} `id`", "H": "tab", "I": "", "J": "#not a comment", "K": "no newline"}


def test_bad_lines_are_refused_without_showing_them(tmp_path):
    for text, why in (("A B=1\n", "whitespace in the variable name"),
                      ("a secret on its own line\n", "whitespace in the variable name"),
                      ("=1\n", "no variable name"),
                      ("1A=1\n", "not a variable name"),
                      (b"A=\xff\n", "not valid UTF-8")):
        proc = with_env_file(tmp_path, text)
        assert proc.returncode == 1, (text, proc.stdout)
        assert why in proc.stderr, (text, proc.stderr)
        assert "secret" not in proc.stderr and proc.stdout == ""
