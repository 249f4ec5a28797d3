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


def render_home(template_paths, admin):
    """home.html through a loader built like JupyterHub.init_tornado_settings's."""
    from jupyterhub.app import JupyterHub

    base = JupyterHub()._template_paths_default()[0]
    loader = ChoiceLoader([
        PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
        FileSystemLoader(list(template_paths) + [base]),
    ])
    env = Environment(loader=loader, autoescape=True, undefined=ChainableUndefined)
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
