"""A newcomer's first hour, on a fresh copy of this checkout, with nothing activated.

``./dev demo`` sets up its own ``.venv`` (saying so) and runs; then the README's Install
lines, exactly as written, in that environment; then the pytest examples of
docs/testing.md with only what those lines installed (the ``testing`` extra), and the
commands that need an extra those lines did not install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .blocks import ROOT, SHELL, blocks
from .test_docs_blocks import commands


def fresh_copy(target: Path) -> Path:
    """The files a clone would have, plus new ones not ignored: this work tree as it
    is now, without its .venv or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not name.startswith("tests/interop/oidc_provider/node_"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def bare_environment() -> dict[str, str]:
    """This process's environment without the development venv on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS", "TOKENGUARD_CLIENT_SECRET"):
        env.pop(name, None)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )


@pytest.mark.timeout(600)
def test_first_hour_on_a_fresh_checkout(tmp_path: Path) -> None:
    checkout = fresh_copy(tmp_path / "tokenguard")
    env = bare_environment()

    demo = run(["./dev", "demo"], checkout, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "./dev: creating the virtual environment .venv" in demo.stderr
    assert "./dev: installing tokenguard and its dependencies" in demo.stderr
    assert "summary" in demo.stdout
    assert "401 InactiveToken" in demo.stdout

    # The README's Install lines, as written, in that environment (as if activated).
    venv = checkout / ".venv"
    active = {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    section = (ROOT / "README.md").read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    install = [b for b in blocks(ROOT / "README.md") if b.lang in SHELL and b.code in section]
    lines = [command for block in install for _, command in commands(block)]
    assert any(re.search(r"pip install \S*\.\[testing\]", line) for line in lines), lines
    for line in lines:
        result = run(["bash", "-c", line], checkout, active)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"

    # docs/testing.md's pytest examples, with only what the install brought.
    examples = tmp_path / "examples"
    examples.mkdir()
    modules = [b for b in blocks(ROOT / "docs" / "testing.md") if b.is_pytest_module]
    assert len(modules) >= 3
    for block in modules:
        (examples / f"test_example_{block.line}.py").write_text(block.code + "\n")
    result = run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        examples,
        active,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(modules)} passed" in result.stdout
    assert run([str(venv / "bin" / "tokenguard"), "--help"], checkout, active).returncode == 0

    # Commands whose extra these lines did not install say so in one line, naming it.
    for args, extra in (
        (["demo", "--fleet"], '".[redis]"'),
        (["gateway", "--config", "gateway.toml", "--check"], '".[gateway]"'),
    ):
        result = run([str(venv / "bin" / "tokenguard"), *args], checkout, active)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"pip install {extra}" in result.stderr
