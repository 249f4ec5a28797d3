"""The operator's documentation as the tests read it: README.md, its Chinese
translation README.zh-CN.md, and the pages of docs/ (docs/zh-CN/ the
Chinese ones). One reader for every test that checks or runs what the
documentation says: page("setup") is docs/setup.md, page("zh-CN/setup") its
translation, page("README") README.md; section(name, heading) the text under
one of its headings."""

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ZH = "zh-CN"

# The docs/ pages without a counterpart in the other language, and why.
ENGLISH_ONLY = {"performance": "measurements and the commands that made them, for developers",
                "releasing": "how maintainers cut a release; operators need only the image's name, in the README"}
CHINESE_ONLY = {"spec.zh-CN": "the original specification, written in Chinese"}


def path(name):
    """README, README.zh-CN, or a page of docs/ without its .md ("setup",
    "zh-CN/setup")."""
    if name in ("README", "README.zh-CN"):
        return ROOT / f"{name}.md"
    return DOCS / f"{name}.md"


def page(name):
    return path(name).read_text(encoding="utf-8")


def markdown_files():
    """README.md, README.zh-CN.md and every page under docs/."""
    return [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted(DOCS.rglob("*.md"))]


def mirrored_pages():
    """The names of the docs/ pages that exist in English and in Chinese."""
    return sorted(p.stem for p in (DOCS / ZH).glob("*.md"))


def operator_files():
    """Every page that tells an operator what to run: the READMEs and the
    pages they split into, in both languages (not the exceptions above)."""
    return [path("README"), path("README.zh-CN"),
            *(path(f"{lang}{name}") for name in mirrored_pages() for lang in ("", ZH + "/"))]


def _outside_fences(text):
    """(line, in a fenced code block) for each line of a markdown text."""
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            yield line, True
        else:
            yield line, fence


def headings(text):
    """(level, title) of each heading, in order; none from code blocks."""
    return [(len(m.group(1)), m.group(2).strip()) for line, fenced in _outside_fences(text)
            if not fenced and (m := re.match(r"(#{1,6}) (.*)", line))]


def markdown_section(text, heading):
    """The text under heading ("## Deploy"), up to the next heading of its
    level or higher."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"heading {heading!r} is missing"
    body, fence = [], False
    for line in lines[lines.index(heading) + 1:]:
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"(#+) ", line)) and len(m.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def section(name, heading):
    """The text under `heading` of the page `name`."""
    return markdown_section(page(name), heading)


def code_block(text, lang="sh"):
    """The first ```lang block of text, without its fences."""
    found = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert found, f"no ```{lang} block in {text[:80]!r}..."
    return found.group(1)


def slug(title):
    """The anchor GitHub gives a heading: lowercased, punctuation (ASCII and
    full-width) dropped, letters of any script, digits, `-` and `_` kept,
    each space a `-`."""
    kept = []
    for ch in title.lower():
        if ch == " ":
            kept.append("-")
        elif ch in "-_" or ch.isalnum() or unicodedata.category(ch).startswith("M"):
            kept.append(ch)
    return "".join(kept)


def anchors(text):
    """Every anchor of the page's headings, the second of a title `-1` as on GitHub."""
    seen, out = {}, set()
    for _, title in headings(text):
        base = slug(re.sub(r"`([^`]*)`", r"\1", title))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(text):
    """The target of every markdown link and image outside code: `[x](t)`."""
    found = []
    for line, fenced in _outside_fences(text):
        if not fenced:
            line = re.sub(r"`[^`]*`", "", line)
            found += re.findall(r"\]\(([^)\s]+)\)", line)
    return found


def broken_links(file):
    """The relative links of a markdown file that lead nowhere: no such file,
    or no heading for the #anchor in the page it names."""
    def shown(p):
        return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p

    text = file.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        name, _, anchor = target.partition("#")
        dest = (file.parent / name).resolve() if name else file
        if not dest.exists():
            broken.append(f"{target}: no file {shown(dest)}")
        elif (anchor and dest.suffix == ".md"
              and anchor not in anchors(dest.read_text(encoding="utf-8"))):
            broken.append(f"{target}: no heading #{anchor} in {shown(dest)}")
    return broken
