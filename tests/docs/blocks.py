"""Fenced code blocks of the Markdown documentation, with their ``docs-test`` markers.

The convention (CONTRIBUTING.md, "Code blocks in the docs"): every fenced block of
README.md, CONTRIBUTING.md, docs/ and examples/ runs as printed, unless the line just
before its fence is a marker such as ``<!-- docs-test: skip REASON -->``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]

PYTHON: Final = frozenset({"python", "py"})
PYCON: Final = frozenset({"pycon"})
SHELL: Final = frozenset({"sh", "bash", "shell"})
DATA: Final = frozenset({"toml", "json"})
PROSE: Final = frozenset({"", "text"})  # diagrams, sample output: never run
RUNNABLE: Final = PYTHON | PYCON | SHELL | DATA

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_MARKERS: Final = ("skip", "bounded", "file")

#: The dev server's address as the docs write it (`tokenguard dev-server --port 9000`).
DEV_SERVER_ADDRESS: Final = "127.0.0.1:9000"


class MarkerError(ValueError):
    """A ``docs-test`` marker the runner does not understand."""


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    marker: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def skipped(self) -> bool:
        return "skip" in self.marker

    @property
    def is_pytest_module(self) -> bool:
        """A Python block that defines a test function is a test module for pytest."""
        return self.lang in PYTHON and bool(
            re.search(r"^(async\s+)?def test_", self.code, re.MULTILINE)
        )


def _parse_marker(text: str, where: str) -> dict[str, str]:
    match = _MARKER.match(text)
    if match is None:
        return {}
    body = match.group("body")
    name, _, argument = body.partition(" ")
    if name not in _MARKERS:
        raise MarkerError(f"{where}: unknown marker {body!r}; use one of {_MARKERS}")
    if name == "skip" and not argument.strip():
        raise MarkerError(f"{where}: `docs-test: skip` needs a reason")
    if name == "bounded" and not re.fullmatch(r"\d+(\.\d+)?s?", argument.strip()):
        raise MarkerError(f"{where}: `docs-test: bounded` needs seconds, e.g. `bounded 10`")
    if name == "file" and not re.fullmatch(r"[\w.-]+", argument.strip()):
        raise MarkerError(f"{where}: `docs-test: file` needs a plain file name")
    return {name: argument.strip()}


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence, lang = match.group("indent", "fence", "lang")
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = _parse_marker(previous, f"{path.relative_to(ROOT)}:{index + 1}")
        body: list[str] = []
        index += 1
        while index < len(lines) and not (
            lines[index].strip().startswith(fence[0] * len(fence))
            and not lines[index].strip().strip(fence[0])
        ):
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        found.append(Block(path, index - len(body) + 1, lang.lower(), "\n".join(body), marker))
        index += 1  # the closing fence
    return found


def pages() -> list[Path]:
    """Every Markdown page the runner reads: README, CONTRIBUTING, docs/ and examples/
    (as tracked or about to be: git's view of the work tree, ignored files left out)."""
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            "*.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    chosen = []
    for name in sorted(set(listed)):
        path = ROOT / name
        top = Path(name).parts[0]
        if path.is_file() and (
            name in ("README.md", "CONTRIBUTING.md") or top in ("docs", "examples")
        ):
            chosen.append(path)
    return chosen
