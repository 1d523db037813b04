"""nox sessions: tests, lint, typecheck, fuzz (long run), bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite with coverage (the interop server is installed first)."""
    session.install("-e", ".[dev]")
    session.run("bash", "tests/interop/setup.sh", external=True)
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "-q", success_codes=[0, 1])
    session.run("coverage", "report", "--fail-under=90")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "tools", "examples")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "tools", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def fuzz(session: nox.Session) -> None:
    """A long property-based run of the fuzz suite (CI runs a bounded one)."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "tests/security",
        "-k",
        "fuzz",
        "--hypothesis-profile=long",
        "--hypothesis-show-statistics",
        "--timeout=0",  # the long profile runs one property for minutes
        *session.posargs,
        env={"TOKENGUARD_FUZZ": "long"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against PyJWT and joserfc in one process; prints ratio tables."""
    session.install("-e", ".[dev]")
    # A full run also records its tables and figures for docs/performance-figures.md.
    record = [] if "--quick" in session.posargs else ["--results", "docs/assets/benchmarks"]
    session.run("python", "benchmarks/run.py", *record, *session.posargs)
    session.run("python", "benchmarks/frameworks.py", *session.posargs)
