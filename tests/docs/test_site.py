"""The documentation site: it builds in strict mode, every page of the navigation
exists, every docs/ page is in the navigation, and every internal link and anchor of the
built HTML resolves.

mkdocs' strict mode already fails on a broken link or anchor in the Markdown and on an
unresolved API reference; the HTML check also covers what only exists after rendering
(the API reference pages, the CLI reference, the theme's own links and assets).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest

mkdocs_config = pytest.importorskip("mkdocs.config", reason="the docs extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Pages the site makes from repository files (tools/docs/hooks.py).
GENERATED = {"index.md": ROOT / "README.md", "contributing.md": ROOT / "CONTRIBUTING.md"}


def nav_pages() -> list[str]:
    """Every Markdown page the navigation of mkdocs.yml names, in order."""
    config = mkdocs_config.load_config(str(ROOT / "mkdocs.yml"))

    def walk(item: object) -> Iterator[str]:
        if isinstance(item, str):
            if not urlsplit(item).scheme:
                yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from walk(value)
        elif isinstance(item, list):
            for value in item:
                yield from walk(value)

    return list(walk(config["nav"]))


def test_every_docs_page_is_in_the_nav() -> None:
    listed = set(nav_pages())
    missing = sorted(
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if path.relative_to(DOCS).as_posix() not in listed
    )
    assert not missing, (
        f"docs pages missing from the site's navigation: {missing}. Add each to `nav:` in "
        "mkdocs.yml (under the section where a reader would look for it), or the site "
        "build fails and nobody finds the page."
    )


def test_every_nav_entry_has_its_page() -> None:
    for page in nav_pages():
        source = GENERATED.get(page, DOCS / page)
        assert source.is_file(), f"mkdocs.yml names {page!r} in `nav:`, which has no page"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once in strict mode (a warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, (
        "`./dev docs` (mkdocs build --strict) fails:\n" + result.stdout + result.stderr
    )
    return out


def test_each_nav_page_is_built(site: Path) -> None:
    for page in nav_pages():
        stem = page.removesuffix(".md")
        built = site / "index.html" if stem == "index" else site / stem.removesuffix("/index")
        if built.suffix != ".html":
            built = built / "index.html"
        assert built.is_file(), f"{page} is in the navigation but {built} was not built"


class _Page(HTMLParser):
    """The anchors a page defines and the URLs it refers to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        for name in ("id", "name") if tag == "a" else ("id",):
            if name in values:
                self.ids.add(values[name])
        for name in ("href", "src"):
            if name in values and tag in {"a", "link", "img", "script", "source", "iframe"}:
                self.urls.append((tag, values[name]))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _target(site: Path, page: Path, url: str) -> tuple[Path, str] | None:
    """The file and fragment an internal URL of ``page`` names; None for external ones."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
        return None
    base = "/" + page.relative_to(site).as_posix()
    resolved = urlsplit(urljoin(base, parts.path)) if parts.path else urlsplit(base)
    path = site / unquote(resolved.path).lstrip("/")
    if path.is_dir() or resolved.path.endswith("/"):
        path = path / "index.html"
    return path, unquote(parts.fragment)


def broken_links(site: Path) -> list[str]:
    """Every internal link, asset or anchor of the built site that does not resolve."""
    pages = {path: _parse(path) for path in site.rglob("*.html")}
    broken: list[str] = []
    for path, page in pages.items():
        where = path.relative_to(site).as_posix()
        for tag, url in page.urls:
            target = _target(site, path, url)
            if target is None:
                continue
            file, fragment = target
            if not file.is_file():
                broken.append(f"{where}: <{tag}> {url!r}: no {file.relative_to(site)}")
            elif fragment and file in pages and fragment not in pages[file].ids:
                broken.append(f"{where}: <{tag}> {url!r}: no anchor #{fragment}")
    return sorted(broken)


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    assert len(list(site.rglob("*.html"))) >= len(nav_pages())
    broken = broken_links(site)
    assert not broken, "broken links in the built site:\n" + "\n".join(broken)


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text(
        '<h2 id="here">x</h2><a href="#here">ok</a><a href="../b/#there">ok</a>'
        '<a href="../b/#nowhere">bad anchor</a><a href="../c/">no page</a>'
        '<img src="../img.png"><a href="https://example.com/#x">external</a>'
        '<link href="/b/index.html">'
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "index.html").write_text('<a name="there"></a><a href="../a/#here">ok</a>')
    assert broken_links(tmp_path) == [
        "a/index.html: <a> '../b/#nowhere': no anchor #nowhere",
        "a/index.html: <a> '../c/': no c/index.html",
        "a/index.html: <img> '../img.png': no img.png",
    ]


def test_every_public_name_is_in_the_api_reference() -> None:
    import tokenguard
    import tokenguard.testing

    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: (tokenguard[\w.]*)", text, re.MULTILINE))
    missing = []
    for module in (tokenguard, tokenguard.testing):
        for name in module.__all__:
            if name.startswith("__"):
                continue
            value = getattr(module, name)
            same = [f"tokenguard.{name}"] if getattr(tokenguard, name, None) is value else []
            if not {f"{module.__name__}.{name}", *same} & documented:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, (
        f"public names missing from the API reference: {missing}. Add `::: NAME` to the "
        "page of docs/reference/ where it belongs (mkdocstrings renders its docstring)."
    )


def _hooks() -> Any:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "tools/docs/hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_out_of_docs_become_text_and_broken_ones_stay() -> None:
    hooks = _hooks()
    page = SimpleNamespace(file=SimpleNamespace(abs_src_path=str(DOCS / "concepts.md")))
    config = {"docs_dir": str(DOCS)}
    markdown = (
        "[the README](../README.md), [`tests/`](../tests), [nothing](../no-such-file.md), "
        "[a page](security.md), [a site](https://example.com/)"
    )
    assert hooks.on_page_markdown(markdown, page, config) == (
        "the README (`README.md` in the repository), `tests/` (in the repository), "
        "[nothing](../no-such-file.md), [a page](security.md), [a site](https://example.com/)"
    )


def test_readme_links_into_docs_become_page_links() -> None:
    hooks = _hooks()
    assert (
        hooks.rewrite_links(
            "[c](docs/concepts.md#caches), [x](CONTRIBUTING.md), [e](examples/app.py), [w](#run-it)"
        )
        == "[c](concepts.md#caches), [x](contributing.md), e, [w](#run-it)"
    )
