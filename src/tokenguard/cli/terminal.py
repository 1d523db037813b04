"""The terminal side of the commands: reading tokens, printing outcomes, exit codes.

Everything a token says about itself is untrusted: :func:`safe` escapes the characters
that could drive a terminal (escape sequences, bidirectional overrides, line separators)
before anything read from a token is printed.
"""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import click

from ..errors import ConfigurationError, TokenGuardError

__all__ = [
    "EMPTY_INPUT",
    "EXIT_INVALID",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "EXIT_VALID",
    "STDIN",
    "CommandError",
    "OneLineUsageErrors",
    "Problem",
    "captured_reasons",
    "echo_json",
    "exit_code",
    "fail",
    "read_token",
    "report_error",
    "safe",
]

EXIT_VALID: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3

# Control (Cc), format (Cf: bidi overrides, zero-width), surrogate (Cs), private-use
# (Co), unassigned (Cn) and line/paragraph separator (Zl, Zp) characters.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Far above any token tokenguard accepts (Settings.max_token_length, at most 1 MiB);
# reading stops there so a runaway pipe cannot fill memory.
_MAX_STDIN: Final = 1024 * 1024 + 1
STDIN: Final = "-"
EMPTY_INPUT: Final = (
    'no token: give it on standard input (echo "$TOKEN" | tokenguard ...) or as TOKEN'
)


def read_token(token: str) -> str:
    """The token given as an argument, or read from standard input for ``-``: asked for
    without echo at a terminal, else read (bounded) from the pipe."""
    if token == STDIN:
        if sys.stdin is None:
            return ""
        if sys.stdin.isatty():
            token = click.prompt("Token", hide_input=True, err=True)
        else:
            token = sys.stdin.read(_MAX_STDIN)
    return token.strip()


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: str) -> str:
    """``text`` with every character that could act on a terminal escaped as ``\\xNN``
    / ``\\uNNNN`` (printable text, spaces and non-ASCII letters are kept)."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in text
    )


class CommandError(click.ClickException):
    """A command cannot do what it was asked (a missing extra, a port in use, a bad
    file): one line on stderr, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line: what is wrong, and where the help is."""

    def show(self, file: Any = None) -> None:
        where = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = self.format_message().rstrip(".")
        click.secho(f"error: {message}{where}", fg="red", err=True)


class OneLineUsageErrors(click.Group):
    """The command group whose usage errors, its own and its commands' (a missing
    option, an unknown command, a bad value), are one line on stderr instead of click's
    usage block."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _one_line(error) from None


# click >= 8.2 shows the help as a usage error when a group is run without a command.
_HELP_SHOWN: Final[tuple[type[Exception], ...]] = tuple(
    kind for kind in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if kind is not None
)


def _one_line(error: click.UsageError) -> click.UsageError:
    if isinstance(error, (_OneLineUsageError, *_HELP_SHOWN)):
        return error
    return _OneLineUsageError(error.format_message(), error.ctx)


@dataclass(frozen=True)
class Problem:
    """Why a command cannot run as asked: a usage or configuration error (exit 2)."""

    kind: str  # "usage" or "configuration"
    messages: Sequence[str]
    hints: Sequence[str] = field(default_factory=tuple)


def fail(problem: Problem, *, as_json: bool) -> NoReturn:
    """Print ``problem`` (on stderr, or as JSON on stdout) and exit with code 2."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": False,
                    "status": None,
                    "error": f"{problem.kind}_error",
                    "error_class": "ConfigurationError"
                    if problem.kind == "configuration"
                    else "UsageError",
                    "description": "; ".join(problem.messages),
                    "reasons": list(problem.messages),
                    "hints": list(problem.hints),
                }
            )
        )
    else:
        # One line per problem, each naming what to change; the hints, for a program
        # reading the JSON, say again what the messages already say.
        for message in problem.messages:
            click.secho(f"error: {safe(message)}", fg="red", err=True)
    raise SystemExit(EXIT_USAGE)


def exit_code(error: TokenGuardError) -> int:
    """The exit code for a refused validation."""
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    return EXIT_UNAVAILABLE if error.status_code >= 500 else EXIT_INVALID


def _headline(error: TokenGuardError) -> tuple[str, str]:
    if isinstance(error, ConfigurationError):
        return "CONFIGURATION ERROR", "red"
    if error.status_code >= 500:
        return "UNAVAILABLE", "yellow"
    if error.status_code == 403:
        return "INSUFFICIENT SCOPE", "red"
    return "INVALID", "red"


def report_error(
    error: TokenGuardError,
    *,
    as_json: bool,
    reasons: Sequence[str] = (),
    hints: Sequence[str] = (),
) -> int:
    """Print a refused validation (with what the library logged about it) and return the
    exit code: 1 invalid, 2 configuration, 3 unavailable."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": False,
                    "status": error.status_code,
                    "error": error.error,
                    "error_class": type(error).__name__,
                    "description": error.description,
                    "reasons": list(reasons),
                    "hints": list(hints),
                    "www_authenticate": error.www_authenticate(),
                }
            )
        )
        return exit_code(error)
    label, colour = _headline(error)
    click.secho(f"{label}: {error.status_code} {type(error).__name__}", fg=colour, bold=True)
    click.echo(f"  {error.description}")
    for reason in reasons:
        click.echo(f"  reason: {safe(reason)}")
    for hint in hints:
        click.echo(f"  hint: {hint}")
    click.echo(f"  WWW-Authenticate: {error.www_authenticate()}")
    return exit_code(error)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a record that cannot be formatted is not worth a crash
            self.messages.append(str(record.msg))


@contextmanager
def captured_reasons() -> Iterator[list[str]]:
    """Collect the warnings tokenguard logs (they say why a fetch failed) instead of
    letting them reach stderr unformatted; they never hold a token or a secret."""
    logger = logging.getLogger("tokenguard")
    collector = _Collector()
    propagate = logger.propagate
    logger.addHandler(collector)
    logger.propagate = False
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)
        logger.propagate = propagate


def echo_json(value: Any) -> None:
    """Print ``value`` as one line of JSON (ASCII only: nothing can act on a terminal)."""
    click.echo(json.dumps(value, default=str))
