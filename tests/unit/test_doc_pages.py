"""The documentation holds together: README.md leads to every page of docs/
(README.zh-CN.md to every Chinese one), every relative link and #anchor of
every page leads somewhere, and every English page has its Chinese
counterpart in docs/zh-CN/, each linking the other, or a written reason in
tests/docpages.py why not."""

import re

import pytest

from docpages import (
    CHINESE_ONLY, DOCS, ENGLISH_ONLY, ROOT, ZH, anchors, broken_links, links, markdown_files,
    code_block, mirrored_pages, page, section, slug,
)


@pytest.mark.parametrize("file", markdown_files(), ids=lambda f: str(f.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(file):
    broken = broken_links(file)
    assert not broken, f"{file.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("readme, folder", [("README", DOCS), ("README.zh-CN", DOCS / ZH)])
def test_the_readme_links_every_page(readme, folder):
    """Every page of its language, the pages without a translation included."""
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(page(readme))}
    pages = set(folder.glob("*.md"))
    if readme == "README":
        pages |= {DOCS / f"{name}.md" for name in CHINESE_ONLY}
    else:
        pages |= {DOCS / f"{name}.md" for name in (*ENGLISH_ONLY, *CHINESE_ONLY)}
    missing = sorted(str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked)
    assert not missing, f"{readme}.md does not link {missing}"


def test_every_page_has_its_translation_or_a_reason():
    english = {p.stem for p in DOCS.glob("*.md")}
    chinese = set(mirrored_pages())
    excused = set(ENGLISH_ONLY) | set(CHINESE_ONLY)
    assert chinese, "docs/zh-CN/ has no pages"
    assert english - chinese - excused == set(), \
        "pages of docs/ without a translation in docs/zh-CN/ and no reason in tests/docpages.py: " \
        f"{sorted(english - chinese - excused)}"
    assert excused <= english - chinese, \
        f"tests/docpages.py excuses pages that are gone or translated: {sorted(excused - (english - chinese))}"
    assert chinese <= english, f"docs/zh-CN/ pages with no English page: {sorted(chinese - english)}"


@pytest.mark.parametrize("name", mirrored_pages())
def test_each_page_links_its_translation(name):
    assert f"]({ZH}/{name}.md)" in page(name), f"docs/{name}.md does not link docs/zh-CN/{name}.md"
    assert f"](../{name}.md)" in page(f"{ZH}/{name}"), \
        f"docs/zh-CN/{name}.md does not link docs/{name}.md"


def test_anchors_are_githubs():
    """The slugs GitHub gives these headings (as its pages link them)."""
    assert slug("Upgrading from this project's 5.5.4 image") == \
        "upgrading-from-this-projects-554-image"
    assert slug("Upgrading from hsz1273327/jupyterhub-for-swarm 4.0.1") == \
        "upgrading-from-hsz1273327jupyterhub-for-swarm-401"
    assert slug("Auth: NativeAuthenticator") == "auth-nativeauthenticator"
    assert slug("SPAWNER设置：用户服务器") == "spawner设置用户服务器"
    assert slug("用docker secret保存机密") == "用docker-secret保存机密"
    assert anchors("# A\n## Reproduce\n```\n## not a heading\n```\n### Reproduce\n") == {
        "a", "reproduce", "reproduce-1"}


def test_a_broken_link_is_found(tmp_path):
    """The check itself: a page naming a missing file, a missing heading,
    and one whose links all resolve."""
    (tmp_path / "other.md").write_text("# Other\n\n## A heading\n")
    bad = tmp_path / "bad.md"
    bad.write_text("# Bad\n\n[x](other.md#a-heading) [y](other.md#no-such) [z](gone.md)\n"
                   "`[not](a-link.md)`\n\n```\n[nor](this.md)\n```\n[self](#bad)\n")
    found = broken_links(bad)
    assert len(found) == 2 and re.search(r"#no-such: no heading", found[0]) and \
        "gone.md: no file" in found[1], found


def _commands(block):
    """A shell block's command lines, comments and blank lines left out."""
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_both_readmes_give_the_same_quick_start():
    """tests/e2e/test_28_quick_start.py runs the English one."""
    english = _commands(code_block(section("README", "## Quick start")))
    chinese = _commands(code_block(section("README.zh-CN", "## 快速开始")))
    assert english and english == chinese
