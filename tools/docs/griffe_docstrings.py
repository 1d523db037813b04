"""A griffe extension: tokenguard's docstring conventions, as mkdocstrings expects them.

* **Sphinx roles.** Docstrings name other objects the Sphinx way (``:class:`TokenInfo```,
  ``:meth:`~tokenguard.TokenGuard.validate```), which mkdocstrings would print as they
  are. Each becomes an optional mkdocs-autorefs reference: a link when the target is on a
  page of the site, plain code otherwise (a private helper is not documented, and its
  name must not fail the strict build). References written in the site's own pages
  (``[TokenInfo][tokenguard.TokenInfo]``) stay strict.
* **Grouped parameters.** An ``Args:`` entry may document several parameters at once
  (``realm, resource, metadata: see Protection``). It becomes one entry per parameter
  with the same description, so griffe still checks every name against the signature
  (a parameter documented under an old name fails the strict build).
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj|const):`(?P<target>[^`]+)`")
_PARAMETER_SECTION = re.compile(
    r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Keyword Args|Keyword Arguments"
    r"|Other Parameters):\s*$"
)
_GROUPED_ENTRY = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:\s*,\s*\w+)+)\s*:(?P<rest>.*)$")


class TokenguardDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package (roles, grouped parameters)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            value = split_grouped_parameters(obj.docstring.value)
            obj.docstring.value = _ROLE.sub(lambda m: _link(obj, m["target"]), value)
        for member in obj.members.values():
            if not member.is_alias and isinstance(member, griffe.Object):
                self._walk(member, seen)


def split_grouped_parameters(text: str) -> str:
    """``a, b: text`` in a parameter section becomes ``a: text`` and ``b: text``."""
    lines = text.splitlines()
    out: list[str] = []
    section: int | None = None  # indentation of the current parameter section's title
    index = 0
    while index < len(lines):
        line = lines[index]
        indent = len(line) - len(line.lstrip())
        if title := _PARAMETER_SECTION.match(line):
            section = len(title["indent"])
        elif section is not None and line.strip() and indent <= section:
            section = None
        grouped = _GROUPED_ENTRY.match(line) if section is not None else None
        if grouped is None:
            out.append(line)
            index += 1
            continue
        entry_indent = len(grouped["indent"])
        follow = index + 1
        while follow < len(lines) and (
            not lines[follow].strip()
            or len(lines[follow]) - len(lines[follow].lstrip()) > entry_indent
        ):
            follow += 1
        continuation = lines[index + 1 : follow]
        while continuation and not continuation[-1].strip():
            continuation.pop()
            follow -= 1
        for name in re.split(r"\s*,\s*", grouped["names"]):
            out.append(f"{grouped['indent']}{name}:{grouped['rest']}")
            out.extend(continuation)
        index = follow
    return "\n".join(out)


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
