"""mkdocs hooks: pages written for the repository, served as a site.

* The home page is the README and ``contributing.md`` is CONTRIBUTING.md, generated at
  build time. They are written for the repository root (links into ``docs/``); the
  site serves ``docs/`` as its root, so links are rewritten to the pages they name.
* A link from a page to a file of the repository outside ``docs/`` (``../examples``,
  ``../src/tokenguard/edge.py``) works on GitHub but has no page on the site: it keeps
  its text, followed by the path, and loses the link. A link to a file that does not
  exist stays as written, so the strict build still fails on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
#: Repository files served as pages: file in the repository -> page in the site.
GENERATED = {"README.md": "index.md", "CONTRIBUTING.md": "contributing.md"}

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<url>[^)\s]+)\)")


def rewrite_links(markdown: str) -> str:
    """Links of a repository-root Markdown file, as seen from the site's root."""

    def replace(match: re.Match[str]) -> str:
        text, url = match["text"], match["url"]
        if re.match(r"[a-z][a-z0-9+.-]*:|#", url):  # absolute URL or anchor
            return match[0]
        path, _, anchor = url.partition("#")
        if path.startswith("docs/"):
            return f"[{text}]({path.removeprefix('docs/')}{'#' + anchor if anchor else ''})"
        if path in GENERATED:
            return f"[{text}]({GENERATED[path]}{'#' + anchor if anchor else ''})"
        return text

    return _LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    source = page.file.abs_src_path
    if source is None:  # generated pages: rewritten in on_files
        return markdown
    here = Path(source).parent
    docs = Path(config["docs_dir"]).resolve()

    def replace(match: re.Match[str]) -> str:
        url = match["url"]
        if re.match(r"[a-z][a-z0-9+.-]*:|#", url):
            return match[0]
        target = (here / url.partition("#")[0]).resolve()
        if target.is_relative_to(docs) or not target.exists():
            return match[0]
        if not target.is_relative_to(ROOT):
            return match[0]
        shown = target.relative_to(ROOT).as_posix() + ("/" if target.is_dir() else "")
        if match["text"].strip("`").rstrip("/") == shown.rstrip("/"):
            return f"`{shown}` (in the repository)"
        return f"{match['text']} (`{shown}` in the repository)"

    return _LINK.sub(replace, markdown)


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_nav_pages(v) for v in nav))
    return set()


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    # Only pages the navigation lists: a file that appears in the repository later
    # (CONTRIBUTING.md) must not break the strict build before someone adds it to nav.
    wanted = _nav_pages(config["nav"])
    for source, page in GENERATED.items():
        path = ROOT / source
        if page in wanted and path.is_file() and files.get_file_from_path(page) is None:
            content = rewrite_links(path.read_text(encoding="utf-8"))
            files.append(File.generated(config, page, content=content))
    return files
