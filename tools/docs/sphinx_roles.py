"""A griffe extension: Sphinx cross-reference roles in docstrings become links.

tokenguard's docstrings name other objects the Sphinx way (``:class:`TokenInfo```,
``:meth:`~tokenguard.TokenGuard.validate```), which mkdocstrings would print as they
are. Each role becomes an optional mkdocs-autorefs reference: a link when the target is
on a page of the site, plain code otherwise (a private helper is not documented, and
its name must not fail the strict build). References written in the site's own pages
(``[TokenInfo][tokenguard.TokenInfo]``) stay strict.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj|const):`(?P<target>[^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(lambda m: _link(obj, m["target"]), obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias and isinstance(member, griffe.Object):
                self._walk(member, seen)


def _link(obj: griffe.Object, target: str) -> str:
    short = target.startswith("~")
    target = target.lstrip("~!")
    shown = target.rsplit(".", 1)[-1] if short else target
    return (
        f'<autoref identifier="{escape(_resolve(obj, target))}" optional>'
        f"<code>{escape(shown)}</code></autoref>"
    )


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj``'s scope, or ``target`` itself."""
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            found = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
            continue
        return f"{found}.{rest}" if rest else found
    return target
