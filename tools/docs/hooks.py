"""mkdocs hooks: the site's home page is the README, generated at build time.

The README is written for the repository (links into ``docs/``), the site serves
``docs/`` as its root: links are rewritten to the pages they name. A link to a file of
the repository that is not a page of the site keeps its text and loses the link (the
strict build would otherwise fail on it), except ``CONTRIBUTING.md``, which the site
also serves.
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
