"""``tokenguard validate``: validate one token against a real authorization server.

The command builds a one-policy guard from its options and calls it; every decision is
the library's. What the command adds is reporting: configuration problems named by the
option that causes them, the missing option when the token needs introspection, the
reasons the library logged for an unavailable answer, and JSON for every outcome under
``--json`` (usage errors included).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import click
from click.core import ParameterSource
from pydantic import ValidationError

from ..core.detect import TokenFormat, detect
from ..errors import ConfigurationError, InvalidAudience, TokenGuardError, UntrustedIssuer
from ..models import TokenInfo
from .terminal import (
    EMPTY_INPUT,
    STDIN,
    Problem,
    captured_reasons,
    echo_json,
    fail,
    read_token,
    report_error,
    safe,
)

__all__ = ["validate"]

# Configuration fields and the options that set them, to name the option in an error.
_OPTION_OF: Final = {
    "issuer": "--issuer",
    "allow_insecure_http": "--allow-insecure-http",
    "audience": "--audience",
    "required_scopes": "--scope",
    "algorithms": "--algorithm",
    "mode": "--mode",
    "client_id": "--client-id",
    "client_secret": "the client secret",
}
_CREDENTIALS: Final = (
    "--client-id (or TOKENGUARD_CLIENT_ID) and the client secret in TOKENGUARD_CLIENT_SECRET"
)


class _JsonUsageErrors(click.Command):
    """A command whose usage errors are printed as JSON on stdout under ``--json``, like
    every other outcome, so a script reading stdout always gets one JSON object."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        wants_json = "--json" in args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            if not wants_json:
                raise
            fail(Problem("usage", [error.format_message()]), as_json=True)


def _in_cli_terms(message: str) -> str:
    """A library message in the command's words: ``allow_insecure_http=True`` is the
    ``--allow-insecure-http`` flag here."""
    return re.sub(
        r"\b(\w+)=True\b",
        lambda match: _OPTION_OF.get(match.group(1), match.group(0)),
        message,
    )


def _configuration_problems(error: ValidationError, *, about: str | None = None) -> list[str]:
    """One line per problem, named by the option that causes it (``about`` when the
    library names no field: a check of the whole object, such as the issuer URL's)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = next((str(part) for part in item["loc"] if str(part) in _OPTION_OF), None)
        option = _OPTION_OF[field] if field else about
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_too_short" and item.get("ctx", {}).get("min_length") == 1:
            message = "must not be empty"
        message = _in_cli_terms(message)
        if option and field is None and message.startswith(f"{option.lstrip('-')} "):
            problems.append(f"{option} {message.split(' ', 1)[1]}")  # "--issuer must use https"
        else:
            problems.append(f"{option}: {message}" if option else message)
    return problems


def _configuration_hints(issuer: str, allow_insecure_http: bool) -> list[str]:
    if urlsplit(issuer).scheme == "http" and not allow_insecure_http:
        return [
            "a test server on loopback (such as `tokenguard dev-server`) needs "
            "--allow-insecure-http; any other server must use https"
        ]
    return []


def _credentials_problem(
    token: str, mode: str, client_id: str | None, client_secret: str | None
) -> str | None:
    """What is missing for client authentication, if anything. Checked before any
    request, so a missing option is reported as such and not as an invalid token."""
    if client_id and not client_secret:
        return (
            "--client-id needs a client secret: set TOKENGUARD_CLIENT_SECRET "
            "(or pass --client-secret)"
        )
    if client_secret and not client_id:
        return "a client secret needs --client-id (or TOKENGUARD_CLIENT_ID)"
    if client_id:
        return None
    if mode in ("introspect", "high_assurance"):
        return f"--mode {mode} validates by introspection, which needs {_CREDENTIALS}"
    fmt = detect(token)
    if mode == "hybrid" and fmt in (TokenFormat.OPAQUE, TokenFormat.JWE):
        kind = "an opaque" if fmt is TokenFormat.OPAQUE else "an encrypted (JWE)"
        return f"{kind} token can only be validated by introspection, which needs {_CREDENTIALS}"
    return None


def _hints(error: TokenGuardError, token: str) -> list[str]:
    """What to look at next for a refusal a newcomer meets first (nothing read from the
    token is repeated here: `tokenguard inspect` shows a JWT's claims, escaped)."""
    if detect(token) is not TokenFormat.JWS:
        return []
    if isinstance(error, UntrustedIssuer):
        return ["the token names another issuer than --issuer: `tokenguard inspect` shows its iss"]
    if isinstance(error, InvalidAudience):
        return ["`tokenguard inspect` shows the token's aud; --audience must be one of its values"]
    return []


def _info_rows(info: TokenInfo) -> list[tuple[str, str]]:
    rows = [
        ("source", info.source),
        ("issuer", info.issuer or ""),
        ("subject", info.subject or ""),
        ("client_id", info.client_id or ""),
        ("username", info.username or ""),
        ("scopes", " ".join(sorted(info.scopes))),
        ("audience", " ".join(info.audience)),
        ("expires_at", info.expires_at.isoformat() if info.expires_at else ""),
        ("issued_at", info.issued_at.isoformat() if info.issued_at else ""),
        ("token_id", info.token_id or ""),
        ("token_type", info.token_type or ""),
        ("cached", str(info.cached)),
    ]
    return [(name, safe(value)) for name, value in rows if value]


@click.command(cls=_JsonUsageErrors)
@click.argument("token", default=STDIN, required=False, metavar="[TOKEN]")
@click.option(
    "--issuer", required=True, help="The authorization server's issuer identifier (exact iss)."
)
@click.option("--audience", required=True, help="The audience this resource server is.")
@click.option("--scope", "scopes", multiple=True, help="A required scope (repeatable).")
@click.option(
    "--mode",
    type=click.Choice(["jwt", "introspect", "hybrid", "high_assurance"]),
    default="hybrid",
    show_default=True,
    help="jwt: verify JWTs locally, refuse opaque tokens; introspect: ask the server; "
    "hybrid: JWTs locally, opaque tokens by introspection; high_assurance: JWTs "
    "verified locally and asked live.",
)
@click.option(
    "--algorithm",
    "algorithms",
    multiple=True,
    help="An accepted JWS alg (repeatable; default: the asymmetric ones, never none).",
)
@click.option(
    "--accept-plain-jwt",
    is_flag=True,
    help="Also accept JWTs typed JWT or untyped (by default only typ at+jwt).",
)
@click.option(
    "--client-id",
    envvar="TOKENGUARD_CLIENT_ID",
    show_envvar=True,
    help="Client id for introspection (opaque tokens, --mode introspect/high_assurance).",
)
@click.option(
    "--client-secret",
    envvar="TOKENGUARD_CLIENT_SECRET",
    show_envvar=True,
    help="Client secret for introspection. Prefer the TOKENGUARD_CLIENT_SECRET variable: "
    "arguments show in ps and stay in shell history.",
)
@click.option(
    "--client-auth",
    type=click.Choice(["client_secret_basic", "client_secret_post"]),
    default="client_secret_basic",
    show_default=True,
    help="How the client authenticates to the introspection endpoint.",
)
@click.option(
    "--allow-missing-audience",
    is_flag=True,
    help="Accept introspection answers that carry no aud (by default an opaque token needs it).",
)
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Allow a plain http:// issuer on a loopback address (a test server only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome, errors too, as JSON.")
@click.pass_context
def validate(
    ctx: click.Context,
    token: str,
    issuer: str,
    audience: str,
    scopes: Sequence[str],
    mode: str,
    algorithms: Sequence[str],
    accept_plain_jwt: bool,
    client_id: str | None,
    client_secret: str | None,
    client_auth: str,
    allow_missing_audience: bool,
    allow_insecure_http: bool,
    as_json: bool,
) -> None:
    """Validate TOKEN against a real authorization server (found by discovery).

    TOKEN: the access token, or - (the default) to read it from standard input, e.g.
    `echo "$TOKEN" | tokenguard validate --issuer ... --audience ...`; at a terminal it
    is asked for without echo. Prefer standard input: arguments show in ps and stay in
    shell history.

    Opaque tokens are introspected, which needs client credentials: --client-id (or
    TOKENGUARD_CLIENT_ID) and the secret in TOKENGUARD_CLIENT_SECRET.

    Exit codes: 0 valid, 1 invalid or insufficient scope, 2 usage or configuration
    error, 3 validation unavailable.
    """
    from ..client_auth import ClientSecretBasic, ClientSecretPost
    from ..config import Issuer, Policy
    from ..guard import TokenGuard

    if ctx.get_parameter_source("client_secret") is ParameterSource.COMMANDLINE:
        click.echo(
            "note: a secret given as an argument shows in ps and stays in shell history; "
            "prefer the TOKENGUARD_CLIENT_SECRET variable",
            err=True,
        )
    token = read_token(token)
    policy: dict[str, Any] = {
        "name": "cli",
        "audience": audience,
        "required_scopes": tuple(scopes),
        "mode": mode,
        "accept_plain_jwt": accept_plain_jwt,
        "require_introspection_audience": not allow_missing_audience,
    }
    if algorithms:
        policy["algorithms"] = tuple(algorithms)
    # Every problem at once: the configuration's (named by option), then what is missing.
    problems: list[str] = []
    method = ClientSecretPost if client_auth == "client_secret_post" else ClientSecretBasic
    auth = None
    try:
        auth = method(client_id, client_secret) if client_id and client_secret else None
    except ValidationError as error:
        problems += _configuration_problems(error, about="--client-id")
    issuer_config = policy_config = None
    try:
        issuer_config = Issuer(issuer, client_auth=auth, allow_insecure_http=allow_insecure_http)
    except ValidationError as error:
        problems += _configuration_problems(error, about="--issuer")
    try:
        policy_config = Policy(**policy)
    except ValidationError as error:
        problems += _configuration_problems(error)
    guard = None
    if issuer_config is not None and policy_config is not None:
        try:
            guard = TokenGuard(issuers=[issuer_config], policies=[policy_config])
        except ConfigurationError as error:
            problems.append(_in_cli_terms(error.description))
    kind = "configuration" if problems else "usage"
    missing = _credentials_problem(token, mode, client_id, client_secret) if token else EMPTY_INPUT
    if missing is not None:
        problems.append(missing)
    if problems or guard is None:
        hints = _configuration_hints(issuer, allow_insecure_http)
        fail(Problem(kind, problems, hints), as_json=as_json)
    with guard, captured_reasons() as reasons:
        try:
            info = guard.validate(token)
        except TokenGuardError as error:
            code = report_error(error, as_json=as_json, reasons=reasons, hints=_hints(error, token))
            raise SystemExit(code) from None
    if as_json:
        echo_json({"valid": True, "token": info.model_dump(mode="json")})
        return
    click.secho("VALID", fg="green", bold=True)
    rows = _info_rows(info)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"  {name.ljust(width)}  {value}")
