"""``tokenguard inspect``: decode a token locally, verifying nothing, sending nothing.

The token is untrusted input: every name and value shown is escaped (:func:`safe`,
JSON encoding) so that nothing in it can act on the terminal, such as erasing the
UNVERIFIED banner or printing a fake verdict.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Any, Final

import click

from ..core.detect import TokenFormat, detect
from .terminal import EMPTY_INPUT, EXIT_INVALID, STDIN, CommandError, read_token, safe

__all__ = ["inspect"]

_TIME_CLAIMS: Final = ("exp", "iat", "nbf", "auth_time")


class _Duplicates(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _Duplicates
    return dict(pairs)


def _b64_json(segment: str) -> tuple[Any, str | None]:
    """The JSON value of a base64url segment, or None with what is wrong with it."""
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded)
    except (ValueError, binascii.Error):
        return None, "not base64url"
    try:
        return json.loads(raw, object_pairs_hook=_pairs), None
    except _Duplicates:
        # Shown anyway (last value wins, as most parsers do); tokenguard refuses it.
        return json.loads(raw), "duplicate member names: tokenguard refuses this token"
    except (ValueError, RecursionError):
        return None, "not JSON"


def _relative(seconds: float) -> str:
    sign, seconds = ("in ", seconds) if seconds >= 0 else ("", -seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.1f}{unit}"
            break
    else:
        amount = f"{seconds:.0f}s"
    return f"{sign}{amount}" + ("" if sign else " ago")


def _describe_time(name: str, value: Any, now: float) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return click.style("(not a number)", fg="red")
    try:
        when = datetime.fromtimestamp(value, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return click.style("(out of range)", fg="red")
    text = f"{when} ({_relative(value - now)})"
    if name == "exp":
        text = ("expires " if value > now else "expired ") + text
        return click.style(text, fg="green" if value > now else "red")
    return text


def _print_json(title: str, segment: str, now: float) -> None:
    click.secho(title, bold=True)
    value, problem = _b64_json(segment)
    if problem is not None:
        click.secho(f"  ({problem})", fg="red")
    if value is None:
        return
    if not isinstance(value, dict):
        click.secho("  (not a JSON object)", fg="red")
        return
    for name, item in value.items():
        # JSON encoding escapes every control and non-ASCII character of a value.
        try:
            shown = json.dumps(item)
        except (ValueError, RecursionError):
            shown = click.style("(too deeply nested to show)", fg="red")
        click.echo(f"  {click.style(safe(str(name)), fg='cyan')}: {shown}")
        if name in _TIME_CLAIMS:
            click.echo(f"      {_describe_time(name, item, now)}")


@click.command()
@click.argument("token", default=STDIN, required=False, metavar="[TOKEN]")
def inspect(token: str) -> None:
    """Show what TOKEN says about itself. Nothing is verified and the token is never
    sent anywhere.

    TOKEN: the access token, or - (the default) to read it from standard input, e.g.
    `echo "$TOKEN" | tokenguard inspect`; at a terminal it is asked for without echo.
    Prefer standard input: arguments show in ps and stay in shell history.
    """
    token = read_token(token)
    if not token:
        raise CommandError(EMPTY_INPUT)
    fmt = detect(token)
    now = time.time()
    click.secho(
        "UNVERIFIED: decoded only; signature, issuer and audience were not checked.",
        fg="yellow",
        bold=True,
    )
    click.echo(f"format: {fmt.value}   length: {len(token)}")
    if fmt in (TokenFormat.JWS, TokenFormat.JWE):
        parts = token.split(".")
        _print_json("header", parts[0], now)
        if fmt is TokenFormat.JWS:
            _print_json("claims", parts[1], now)
        else:
            click.echo("claims: encrypted (JWE); only the authorization server can read them")
    elif fmt is TokenFormat.OPAQUE:
        click.echo(
            "an opaque token: only its authorization server's introspection endpoint "
            "knows what it means"
        )
    else:
        click.secho("not a well-formed bearer token", fg="red")
        raise SystemExit(EXIT_INVALID)
