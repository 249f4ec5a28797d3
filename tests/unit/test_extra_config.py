"""The operator's own configuration files (HUB_EXTRA_CONFIG_DIR): every
*.py file of the directory runs after the image's settings, in name order;
a broken one stops the hub naming the file and the error."""

import subprocess
import sys

import pytest
from conftest import CONFIG_FILE, MINIMAL_ENV, ROOT, config_error, load_config, run_real_hub


def config_dir(tmp_path, files):
    """A directory holding `files` ({name: text}), written in the order given."""
    directory = tmp_path / "jupyterhub_config.d"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_a_file_sets_a_setting_and_overrides_a_variable(tmp_path):
    directory = config_dir(tmp_path, {"announce.py": (
        "c.JupyterHub.template_vars = {'announcement_login': 'Maintenance at 18:00'}\n"
        "c.SwarmUserSpawner.mem_limit = c.SwarmUserSpawner.mem_limit // 2\n"
        "assert get_config() is c\n")})
    cfg = load_config(HUB_EXTRA_CONFIG_DIR=str(directory), SPAWNER_MEM_LIMIT="2G")
    assert cfg.JupyterHub.template_vars == {"announcement_login": "Maintenance at 18:00"}
    assert cfg.SwarmUserSpawner.mem_limit == 1024**3
    assert cfg.SwarmUserSpawner.network_name == "jupyterhub_network"  # the rest stays


def test_files_run_in_name_order_later_overriding_earlier(tmp_path):
    # written out of order; "10-" sorts before "2-" (names, not numbers)
    directory = config_dir(tmp_path, {
        "2-last.py": "c.JupyterHub.template_vars = dict(c.JupyterHub.template_vars, by='2-last')\n"
                     "c.JupyterHub.concurrent_spawn_limit = 2\n",
        "10-first.py": "c.JupyterHub.template_vars = {'by': '10-first', 'first': True}\n"
                       "c.JupyterHub.concurrent_spawn_limit = 10\n",
    })
    hub = load_config(HUB_EXTRA_CONFIG_DIR=str(directory)).JupyterHub
    assert hub.template_vars == {"by": "2-last", "first": True}
    assert hub.concurrent_spawn_limit == 2


def test_only_py_files_run(tmp_path):
    broken = "raise RuntimeError('this file must not run')\n"
    directory = config_dir(tmp_path, {"notes.txt": broken, "old.py.disabled": broken,
                                      ".hidden.py": broken, "README": broken,
                                      "good.py": "c.JupyterHub.port = 9999\n"})
    (directory / "folder.py").mkdir()
    assert load_config(HUB_EXTRA_CONFIG_DIR=str(directory)).JupyterHub.port == 9999


def test_a_missing_directory_loads_nothing(tmp_path):
    cfg = load_config(HUB_EXTRA_CONFIG_DIR=str(tmp_path / "missing"))
    assert "template_vars" not in cfg.JupyterHub


def test_a_path_that_is_not_a_directory_is_an_error(tmp_path):
    (tmp_path / "extra.py").write_text("c.JupyterHub.port = 9999\n")
    message = config_error(HUB_EXTRA_CONFIG_DIR=str(tmp_path / "extra.py"))
    assert f"HUB_EXTRA_CONFIG_DIR='{tmp_path}/extra.py' is invalid" in message
    assert "not a directory" in message


def test_a_relative_path_is_an_error():
    message = config_error(HUB_EXTRA_CONFIG_DIR="jupyterhub_config.d")
    assert "HUB_EXTRA_CONFIG_DIR='jupyterhub_config.d' is invalid" in message
    assert "absolute path" in message


BROKEN = {
    "syntax": ("c.JupyterHub.port = 9999\nc.JupyterHub.template_vars = {'a': 1\n",
               "line 2: SyntaxError: '{' was never closed"),
    "exception": ("c.JupyterHub.port = 9999\n\nc.JupyterHub.port = int('eighty')\n",
                  "line 3: ValueError: invalid literal for int() with base 10: 'eighty'"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_file_stops_naming_the_file_line_and_error(tmp_path, kind):
    text, error = BROKEN[kind]
    directory = config_dir(tmp_path, {"10-fine.py": "c.JupyterHub.port = 9998\n",
                                      "20-broken.py": text})
    message = config_error(HUB_EXTRA_CONFIG_DIR=str(directory))
    assert f"HUB_EXTRA_CONFIG_DIR: the configuration file {directory}/20-broken.py " \
           f"failed at {error}" in message, message


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_the_real_hub_stops_at_a_broken_file_before_contacting_anything(tmp_path, kind):
    """The real `jupyterhub` with an unreachable database: it names the file
    and its error at once, without waiting for the database."""
    text, error = BROKEN[kind]
    directory = config_dir(tmp_path, {"20-broken.py": text})
    status, output = run_real_hub(tmp_path, HUB_EXTRA_CONFIG_DIR=str(directory))
    assert status != 0
    assert f"the configuration file {directory}/20-broken.py failed at {error}" in output
    assert "waiting up to" not in output and "cannot connect" not in output
    assert "Starting proxy" not in output and "JupyterHub is now running" not in output


def test_the_check_command_loads_the_files_and_names_them(tmp_path):
    directory = config_dir(tmp_path, {"image.py": "c.SwarmUserSpawner.image = 'my/lab:7'\n"})
    env = dict(MINIMAL_ENV, HUB_EXTRA_CONFIG_DIR=str(directory))
    proc = subprocess.run([sys.executable, str(CONFIG_FILE), "alice"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"jupyterhub_config: loaded {directory}/image.py (HUB_EXTRA_CONFIG_DIR)" in proc.stdout
    assert f"HUB_EXTRA_CONFIG_DIR | {directory} | env" in proc.stdout
    assert "image: my/lab:7" in proc.stdout.split("user alice:")[1]


def test_the_shipped_example_loads():
    """jupyterhub_config.d/ of the repository: what docker-compose.extra-config.yml
    mounts unless told otherwise."""
    cfg = load_config(HUB_EXTRA_CONFIG_DIR=str(ROOT / "jupyterhub_config.d"))
    assert cfg.SwarmUserSpawner.network_name == "jupyterhub_network"
