"""The ``tokenguard`` console script: demo, inspect, validate, dev-server.

Exit codes of ``validate``: 0 valid, 1 invalid (4xx), 2 usage or configuration error,
3 validation unavailable (5xx). Output is coloured on a terminal and plain otherwise
(click strips the colours when stdout is not a TTY).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .config import Issuer, Policy
from .core.detect import TokenFormat, detect
from .errors import ConfigurationError, TokenGuardError
from .models import TokenInfo

if TYPE_CHECKING:
    from .testing import AuthServer

__all__ = ["main"]

EXIT_VALID, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
_TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")


def _heading(text: str) -> None:
    click.secho(text, bold=True)


def _read_token(token: str) -> str:
    if token == "-":  # noqa: S105 - the stdin marker, not a password
        token = sys.stdin.read()
    return token.strip()


# -- inspect ------------------------------------------------------------------------


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error, RecursionError):
        return None


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


def _print_json(title: str, value: Any, now: float) -> None:
    _heading(title)
    if not isinstance(value, dict):
        click.secho("  (not a JSON object)", fg="red")
        return
    for name, item in value.items():
        click.echo(f"  {click.style(str(name), fg='cyan')}: {json.dumps(item)}")
        if name in _TIME_CLAIMS:
            click.echo(f"      {_describe_time(name, item, now)}")


@click.group()
@click.version_option(__version__, prog_name="tokenguard")
def main() -> None:
    """Validate OAuth 2.0 access tokens: JWTs locally, opaque tokens by introspection."""


@main.command()
@click.argument("token")
def inspect(token: str) -> None:
    """Show what TOKEN (or - for stdin) says about itself. Nothing is verified and the
    token is never sent anywhere."""
    token = _read_token(token)
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
        _print_json("header", _b64_json(parts[0]), now)
        if fmt is TokenFormat.JWS:
            _print_json("claims", _b64_json(parts[1]), now)
        else:
            click.echo("claims: encrypted (JWE); only the authorization server can read them")
    elif fmt is TokenFormat.OPAQUE:
        click.echo(
            "an opaque token: only its authorization server's introspection endpoint "
            "knows what it means"
        )
    else:
        click.secho("not a well-formed bearer token", fg="red")
        sys.exit(EXIT_INVALID)


# -- validate -----------------------------------------------------------------------


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
    return [(name, value) for name, value in rows if value]


def _report_error(error: TokenGuardError, as_json: bool) -> int:
    code = EXIT_UNAVAILABLE if error.status_code >= 500 else EXIT_INVALID
    if isinstance(error, ConfigurationError):
        code = EXIT_USAGE
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": False,
                    "status": error.status_code,
                    "error": error.error,
                    "error_class": type(error).__name__,
                    "description": error.description,
                    "www_authenticate": error.www_authenticate(),
                }
            )
        )
    else:
        click.secho(
            f"INVALID ({error.status_code} {type(error).__name__}): {error.description}",
            fg="red",
            bold=True,
        )
        click.echo(f"WWW-Authenticate: {error.www_authenticate()}")
    return code


@main.command()
@click.argument("token")
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
)
@click.option("--algorithm", "algorithms", multiple=True, help="An accepted JWS alg (repeatable).")
@click.option("--accept-plain-jwt", is_flag=True, help="Also accept JWTs without typ at+jwt.")
@click.option("--client-id", envvar="TOKENGUARD_CLIENT_ID", help="Introspection client id.")
@click.option(
    "--client-secret",
    envvar="TOKENGUARD_CLIENT_SECRET",
    help="Introspection client secret (better: the TOKENGUARD_CLIENT_SECRET variable).",
)
@click.option(
    "--allow-missing-audience",
    is_flag=True,
    help="Accept introspection answers that carry no aud (by default an opaque token needs it).",
)
@click.option("--allow-insecure-http", is_flag=True, help="Allow http:// for a loopback server.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(
    token: str,
    issuer: str,
    audience: str,
    scopes: Sequence[str],
    mode: str,
    algorithms: Sequence[str],
    accept_plain_jwt: bool,
    client_id: str | None,
    client_secret: str | None,
    allow_missing_audience: bool,
    allow_insecure_http: bool,
    as_json: bool,
) -> None:
    """Validate TOKEN (or - for stdin) against a real authorization server (discovery)."""
    from .client_auth import ClientSecretBasic
    from .guard import TokenGuard

    token = _read_token(token)
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
    auth = ClientSecretBasic(client_id, client_secret) if client_id and client_secret else None
    try:
        guard = TokenGuard(
            issuers=[Issuer(issuer, client_auth=auth, allow_insecure_http=allow_insecure_http)],
            policies=[policy],
        )
    except (ConfigurationError, ValueError) as error:
        message = error.description if isinstance(error, ConfigurationError) else "invalid options"
        click.secho(f"configuration error: {message}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    with guard:
        try:
            info = guard.validate(token)
        except TokenGuardError as error:
            sys.exit(_report_error(error, as_json))
    if as_json:
        click.echo(json.dumps({"valid": True, "token": info.model_dump(mode="json")}, default=str))
        return
    click.secho("VALID", fg="green", bold=True)
    width = max(len(name) for name, _ in _info_rows(info))
    for name, value in _info_rows(info):
        click.echo(f"  {name.ljust(width)}  {value}")


# -- dev-server ---------------------------------------------------------------------


@main.command("dev-server")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
def dev_server(port: int) -> None:
    """Run the embedded authorization server on 127.0.0.1 until interrupted."""
    from .testing import AuthServer

    with AuthServer(port=port) as server:
        _heading(f"tokenguard dev authorization server {__version__}")
        for name, value in (
            ("issuer", server.issuer),
            ("metadata", server.metadata_url),
            ("jwks_uri", server.jwks_uri),
            ("token_endpoint", server.token_endpoint),
            ("introspection", server.introspection_endpoint),
            ("client_id", server.client_id),
            ("client_secret", server.client_secret),
        ):
            click.echo(f"  {name:<15} {value}")
        click.echo("\nPress Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")


# -- demo ---------------------------------------------------------------------------


def _token_from_endpoint(server: AuthServer, token_format: str) -> str:
    import httpx

    response = httpx.post(
        server.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "scope": "orders:read",
            "token_format": token_format,
        },
        auth=(server.client_id, server.client_secret),
        timeout=5,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@main.command()
def demo() -> None:
    """Start an embedded authorization server and show the hybrid flow end to end."""
    from .client_auth import ClientSecretBasic
    from .guard import TokenGuard
    from .testing import DEFAULT_AUDIENCE, AuthServer

    rows: list[tuple[str, str, str, str, str]] = []
    with AuthServer() as server:
        click.secho(f"embedded authorization server at {server.issuer}", bold=True)
        guard = TokenGuard(
            issuers=[
                Issuer(
                    server.issuer,
                    client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                    allow_insecure_http=True,  # loopback only
                )
            ],
            policies=[
                Policy(name="orders", audience=DEFAULT_AUDIENCE, required_scopes=("orders:read",)),
                Policy(name="orders-live", audience=DEFAULT_AUDIENCE, mode="high_assurance"),
            ],
        )

        def run(kind: str, policy: str, token: str, note: str = "") -> None:
            challenge = ""
            started = time.perf_counter()
            try:
                info = guard.validate(token, policy)
                result = click.style("valid", fg="green") + (" (cached)" if info.cached else "")
                path: str = info.source
            except TokenGuardError as error:
                result = click.style(f"{error.status_code} {type(error).__name__}", fg="red")
                path = "refused"
                challenge = error.www_authenticate(realm="orders")
            elapsed = (time.perf_counter() - started) * 1000
            rows.append((kind, policy, path, result, f"{elapsed:.2f} ms"))
            click.echo(f"  {kind:<28} {result}  {note}".rstrip())
            if challenge:
                click.echo(f"      WWW-Authenticate: {challenge}")

        with guard:
            jwt_token = _token_from_endpoint(server, "jwt")
            opaque = _token_from_endpoint(server, "opaque")
            click.echo(
                "tokens issued by the token endpoint (client_credentials): one JWT, one opaque"
            )
            run(
                "JWT (first sight)",
                "orders",
                jwt_token,
                "discovery + JWKS fetched, verified locally",
            )
            run("JWT (again)", "orders", jwt_token, "verified-token cache")
            run("opaque (first sight)", "orders", opaque, "RFC 7662 introspection")
            run("opaque (again)", "orders", opaque, "introspection cache")
            _revoke(server, opaque)
            click.echo("opaque token revoked at the server (RFC 7009)")
            run("opaque, revoked", "orders-live", opaque, "high assurance: asked live")
            guard.forget(opaque)
            run("opaque, revoked, forgotten", "orders", opaque, "cache dropped: asked again")
            run("JWT, expired", "orders", server.issue_jwt(scopes=["orders:read"], lifetime=-600))
            run(
                "JWT, wrong audience",
                "orders",
                server.issue_jwt(scopes=["orders:read"], audience="urn:other"),
            )
            run("JWT, missing scope", "orders", server.issue_jwt(scopes=["orders:write"]))
    _heading("\nsummary")
    header = ("token", "policy", "path", "result", "time")
    widths = [max(len(click.unstyle(str(r[i]))) for r in (header, *rows)) for i in range(5)]
    for row in (header, *rows):
        cells = [
            str(cell) + " " * (widths[i] - len(click.unstyle(str(cell))))
            for i, cell in enumerate(row)
        ]
        click.echo("  " + "  ".join(cells))


def _revoke(server: AuthServer, token: str) -> None:
    """Revoke through the real RFC 7009 endpoint."""
    import httpx

    httpx.post(
        server.revocation_endpoint,
        data={"token": token},
        auth=(server.client_id, server.client_secret),
        timeout=5,
    ).raise_for_status()
