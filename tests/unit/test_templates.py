"""The hub's pages as JupyterHub renders them with this configuration: the
navigation bar links admins to NativeAuthenticator's approval page.

NativeAuthenticator's page.html adds "Authorize Users" and "Change Password"
only when its template directory comes first (c.JupyterHub.template_paths);
its handlers append the directory after JupyterHub's own, too late for
page.html. The browser test (tests/e2e/test_20_browser.py) clicks the link.
"""

import pytest
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

from conftest import load_config


def environment(template_paths):
    """A Jinja environment whose loader is built like
    JupyterHub.init_tornado_settings's."""
    from jupyterhub.app import JupyterHub

    base = JupyterHub()._template_paths_default()[0]
    loader = ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
        FileSystemLoader(list(template_paths) + [base]),
    ])
    return Environment(loader=loader, autoescape=True, undefined=ChainableUndefined)


def render_home(template_paths, admin):
    env = environment(template_paths)
    return env.get_template("home.html").render(
        base_url="/hub/",
        user={"name": "someone", "admin": admin},
        parsed_scopes={"admin-ui"} if admin else set(),
        static_url=lambda *args, **kwargs: "/hub/static/x",
        default_server={"active": False},
        url="/hub/spawn",
        allow_named_servers=False,
        services=[],
    )


@pytest.mark.parametrize("admin", [True, False])
def test_nav_bar_links_admins_to_the_approval_page(admin):
    html = render_home(load_config().JupyterHub.template_paths, admin)
    assert ('href="/hub/authorize"' in html) is admin
    assert ("Authorize Users" in html) is admin
    assert 'href="/hub/change-password"' in html


def test_without_the_setting_no_page_links_there():
    """What the hub served before: JupyterHub's page.html alone."""
    assert "Authorize Users" not in render_home([], admin=True)


def test_approval_page_changes_state_only_by_post_with_the_xsrf_token():
    """The Authorize Users page: every state change a POST form with the
    token; no link that approves or discards (NativeAuthenticator's own page
    has <a href=".../authorize/<name>"> links, which a GET follows)."""
    import re
    from types import SimpleNamespace

    env = environment(load_config().JupyterHub.template_paths)
    users = [SimpleNamespace(username="pending1", is_authorized=False, has_2fa=False, email=""),
             SimpleNamespace(username="ok1", is_authorized=True, has_2fa=False, email="")]
    html = env.get_template("authorization-area.html").render(
        base_url="/hub/", users=users, ask_email=False, xsrf="TOKEN123",
        user={"name": "admin", "admin": True}, parsed_scopes={"admin-ui"},
        static_url=lambda *a, **k: "/hub/static/x", services=[])
    forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>\s*'
                       r'<input type="hidden" name="_xsrf" value="TOKEN123"/>\s*'
                       r'<button type="submit"[^>]*>(\w+)</button>', html)
    assert sorted(forms) == [("/hub/authorize/ok1", "Unauthorize"),
                             ("/hub/authorize/pending1", "Authorize"),
                             ("/hub/discard/pending1", "Discard")], forms
    assert not re.search(r'href="[^"]*/(authorize|discard)/', html), "a state-changing link"
    assert 'id="pending1"' in html and 'id="ok1"' in html  # quoted


@pytest.mark.parametrize("admin", [True, False])
def test_nav_bar_links_admins_to_the_cluster_page(admin):
    html = render_home(load_config().JupyterHub.template_paths, admin)
    assert ('href="/hub/cluster"' in html) is admin


def test_cluster_page_shows_nodes_and_servers_escaped():
    from jupyterhub_swarm import NodeRow, ServerRow

    env = environment(load_config().JupyterHub.template_paths)
    server = ServerRow("ann", "", "jupyter-ann", "nb:<1>", "running", 7300.0)
    node = NodeRow("box<script>", "worker", "drain", "ready", "linux/aarch64",
                   (("zone", 'a"b'),), 4.0, 8 * 2**30, 0.5, 2**30,
                   (("NVIDIA-GPU", 2, 1),), (server,))
    html = env.get_template("cluster.html").render(
        base_url="/hub/", nodes=(node,), waiting=(), error=None, read_at="12:00:00", max_age=5,
        user={"name": "admin", "admin": True}, parsed_scopes={"admin-ui"},
        static_url=lambda *a, **k: "/hub/static/x", services=[])
    assert "<script>" not in html and "box&lt;script&gt;" in html
    assert "zone=a&#34;b" in html and "nb:&lt;1&gt;" in html
    assert "1 of 2 reserved" in html and "0.50 of 4" in html and "1.0 GiB of 8.0 GiB" in html
    assert '<td class="user">ann</td>' in html and "2 h" in html
    assert "1 node," in html and "1 user server(s)" in html
