"""Every code block of the README and the docs runs as printed (CONTRIBUTING.md).

One test per page. Per page, in this order:

* blocks marked ``<!-- docs-test: file NAME -->`` are written to NAME in the page's
  working directory (TOML and JSON are parsed first);
* if a block mentions the dev server (``tokenguard dev-server`` or ``127.0.0.1:9000``),
  the real ``tokenguard dev-server`` is started on a free port, ``127.0.0.1:9000`` in the
  page's blocks is read as its address, and the lines it prints to paste are run first,
  as a reader in a second terminal would;
* the shell blocks run in one bash session from the project root, one command per line,
  each expected to exit 0 (or N, for a line commented ``# exits N``);
* the Python blocks run in order in one fresh interpreter, in the working directory;
  a block that defines ``test_*`` functions is a test module and runs under pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .blocks import (
    DEV_SERVER_ADDRESS,
    PROSE,
    PYCON,
    PYTHON,
    ROOT,
    RUNNABLE,
    SHELL,
    Block,
    MarkerError,
    blocks,
    pages,
)

BIN = Path(sys.executable).parent
DRIVER = Path(__file__).with_name("driver.py")
_EXITS = re.compile(r"#.*\bexits (\d+)\b")
PAGE_TIMEOUT = 240  # seconds for one page, bounded commands included
_PIP_INSTALL = re.compile(r"^(python3? -m )?pip install (?P<args>.*)$")


@dataclass
class DevServer:
    process: subprocess.Popen[str]
    port: int
    paste: list[str]
    env: dict[str, str]


@pytest.fixture
def dev_server_factory() -> Iterator[list[DevServer]]:
    started: list[DevServer] = []
    yield started
    for server in started:
        server.process.terminate()
        server.process.wait(timeout=10)
        if server.process.stdout is not None:
            server.process.stdout.close()


def start_dev_server(started: list[DevServer]) -> DevServer:
    """``tokenguard dev-server`` as a reader starts it, on a free port."""
    process = subprocess.Popen(
        [str(BIN / "tokenguard"), "dev-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = DevServer(process, 0, [], {})
    started.append(server)
    assert process.stdout is not None
    output: list[str] = []
    pasting = False
    for line in process.stdout:
        output.append(line)
        if line.startswith("Press Ctrl-C"):
            break
        if match := re.match(r"\s+issuer\s+http://127\.0\.0\.1:(\d+)$", line):
            server.port = int(match.group(1))
        elif line.startswith("In another shell"):
            pasting = True
        elif pasting and line.startswith("  "):
            server.paste.append(line.strip())
    else:
        pytest.fail("tokenguard dev-server stopped:\n" + "".join(output))
    assert server.port, "".join(output)
    assert server.paste, "".join(output)
    exports = next(line for line in server.paste if line.startswith("export "))
    server.env = dict(item.split("=", 1) for item in shlex.split(exports)[1:])
    return server


def check_pip_install(where: str, args: str) -> None:
    """A ``pip install`` line is not run here (it would change this environment; the
    newcomer test runs the README's for real); its target must be this checkout and its
    extras must exist."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for word in shlex.split(args, comments=True):
        if word.startswith("-"):
            continue
        match = re.fullmatch(r"(?P<target>[^\[\]]+)(\[(?P<extras>[\w,-]+)\])?", word)
        assert match, f"{where}: cannot read the requirement {word!r}"
        target = match.group("target")
        assert target.startswith("."), (
            f"{where}: `pip install {word}` would fetch {target!r} from PyPI; tokenguard "
            'is installed from a checkout: pip install . (or ".[extra]")'
        )
        unknown = set((match.group("extras") or "").split(",")) - extras - {""}
        assert not unknown, f"{where}: no such extra {sorted(unknown)}; have {extras}"


def commands(block: Block) -> Iterator[tuple[int, str]]:
    """(line, command) for each command of a shell block; ``\\`` continues a line."""
    pending, start = "", 0
    for offset, raw in enumerate(block.code.splitlines()):
        if not pending:
            start = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        command = (pending + raw).strip()
        pending = ""
        if command and not command.startswith("#"):
            yield start, command


def shell_script(page_blocks: list[Block], server: DevServer | None) -> str:
    lines = [
        "set -a -o pipefail",  # -a: every variable is seen by the commands that follow
        "__check() {",
        '  if [ "$1" -ne "$2" ]; then',
        '    echo "docs-test: $3: exit code $1, expected $2" >&2; exit 97',
        "  fi",
        "}",
    ]
    if server is not None:
        lines.append("echo 'docs-test: the lines tokenguard dev-server printed to paste'")
        for number, command in enumerate(server.paste, 1):
            lines += [command, f'__check $? 0 "dev-server paste line {number}"']
    for block in page_blocks:
        bound = block.marker.get("bounded", "").rstrip("s")
        for line, printed in commands(block):
            where = f"{block.path.relative_to(ROOT)}:{line}"
            command = printed
            if server is not None:
                command = printed.replace(DEV_SERVER_ADDRESS, f"127.0.0.1:{server.port}")
            lines.append(f"echo {shlex.quote(f'docs-test: {where}: {command}')}")
            if re.match(r"(\./)?dev test\b", command):
                lines.append("echo 'docs-test: not run: ./dev test is what runs this test'")
                continue
            if command.startswith("tokenguard dev-server"):
                lines.append("echo 'docs-test: the dev server of this page is running'")
                continue
            if match := _PIP_INSTALL.match(command):
                check_pip_install(where, match.group("args"))
                lines.append("echo 'docs-test: pip install checked, not run'")
                continue
            expected = int(match.group(1)) if (match := _EXITS.search(command)) else 0
            if bound:
                # Long-running: stopped at the bound; still running then counts as working.
                run = f"timeout -s INT -k 10 {bound} bash -c {shlex.quote(command)}"
                lines += [run, '__rc=$?; [ "$__rc" -eq 124 ] && __rc=0', f"__check $__rc 0 {where}"]
            else:
                lines += [command, f"__check $? {expected} {where}"]
    return "\n".join(lines) + "\n"


def environment(server: DevServer | None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTEST_ADDOPTS", None)
    if server is not None:
        env.update(server.env)
    return env


def run(args: list[str], where: str, *, cwd: Path, env: dict[str, str]) -> None:
    """Run ``args`` in a process group of its own, killed whatever happens, so that a
    failed or timed-out page leaves no server or benchmark behind."""
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=PAGE_TIMEOUT - 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"{where}\n{stdout}\n{stderr}"


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def runnable_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in RUNNABLE and not b.skipped]


def pages_with_runnable_blocks() -> list[Path]:
    """The pages the runner has something to run on; a page whose markers cannot be read
    is kept, so that its test reports the marker error."""
    chosen = []
    for page in pages():
        try:
            if runnable_blocks(page):
                chosen.append(page)
        except MarkerError:
            chosen.append(page)
    return chosen


def test_every_block_runs_or_says_why_not() -> None:
    """Every page, runnable blocks or not: each block is in a language the runner runs
    (or prose), or carries a skip marker with its reason; every marker is understood."""
    found = [block for page in pages() for block in blocks(page)]
    unmarked = [b.where for b in found if b.lang not in RUNNABLE | PROSE and not b.skipped]
    assert not unmarked, (
        f"blocks in a language the docs runner cannot run: {unmarked}; mark each with "
        "<!-- docs-test: skip REASON --> on the line before its fence (see CONTRIBUTING.md)"
    )
    # The pages left out of test_page_runs_as_printed are only those with nothing to run.
    with_code = set(pages_with_runnable_blocks())
    for page in set(pages()) - with_code:
        assert all(b.skipped or b.lang in PROSE for b in blocks(page)), page_id(page)
    assert ROOT / "README.md" in with_code
    assert ROOT / "docs" / "testing.md" in with_code


# The arguments end where a shell command would: at a pipe, a comment, a separator, a
# closing parenthesis or code span ("... as pip install does); ..." is prose).
_PIP_ANYWHERE = re.compile(r"pip install(?P<args>(?: +[^\s`|#;()]+)+)")


def test_every_pip_install_names_this_checkout() -> None:
    """Prose, tables and comments too, not only the shell blocks: a reader copies
    ``pip install tokenguard[...]`` as readily as a block, and that would fetch whatever
    a package index serves under the name instead of this checkout."""
    wrong = []
    for page in pages():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for match in _PIP_ANYWHERE.finditer(line):
                words = [w.strip("\"'") for w in match.group("args").split()]
                if any(re.match(r"tokenguard\b", word) for word in words):
                    wrong.append(f"{page_id(page)}:{number}: {match.group(0).strip()}")
                for word in words:
                    if word.startswith("."):
                        check_pip_install(f"{page_id(page)}:{number}", shlex.quote(word))
    assert not wrong, f'write `pip install ".[extra]"` (from a checkout): {wrong}'


@pytest.mark.timeout(PAGE_TIMEOUT)
@pytest.mark.parametrize("page", pages_with_runnable_blocks(), ids=page_id)
def test_page_runs_as_printed(
    page: Path, tmp_path: Path, dev_server_factory: list[DevServer]
) -> None:
    runnable = runnable_blocks(page)
    assert runnable, f"{page_id(page)}: no runnable block any more"
    needs_server = any(
        DEV_SERVER_ADDRESS in b.code or "tokenguard dev-server" in b.code for b in runnable
    )
    server = start_dev_server(dev_server_factory) if needs_server else None

    def code(block: Block) -> str:
        if server is None:
            return block.code
        return block.code.replace(DEV_SERVER_ADDRESS, f"127.0.0.1:{server.port}")

    workdir = tmp_path / "work"
    workdir.mkdir()
    for block in runnable:
        if block.lang == "toml":
            tomllib.loads(block.code)
        elif block.lang == "json":
            json.loads(block.code)
        if "file" in block.marker:
            (workdir / block.marker["file"]).write_text(code(block) + "\n")

    env = environment(server)
    shell = [b for b in runnable if b.lang in SHELL and "file" not in b.marker]
    if shell or server is not None:
        run(["bash", "-c", shell_script(shell, server)], page_id(page), cwd=ROOT, env=env)

    python = [
        b
        for b in runnable
        if b.lang in PYTHON | PYCON and not b.is_pytest_module and "file" not in b.marker
    ]
    if python:
        spec = tmp_path / "blocks.json"
        spec.write_text(
            json.dumps(
                [
                    {"where": b.where, "path": str(b.path), "line": b.line, "lang": b.lang}
                    | {"code": code(b)}
                    for b in python
                ]
            )
        )
        run([sys.executable, str(DRIVER), str(spec)], page_id(page), cwd=workdir, env=env)

    modules = [b for b in runnable if b.is_pytest_module and "file" not in b.marker]
    if modules:
        tests = tmp_path / "doc_tests"
        tests.mkdir()
        for block in modules:
            name = re.sub(r"\W", "_", f"test_{block.path.stem}_{block.line}") + ".py"
            (tests / name).write_text(code(block) + "\n")
        run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
            page_id(page) + ": its test modules under pytest",
            cwd=tests,
            env=env,
        )
