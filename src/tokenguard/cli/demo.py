"""``tokenguard demo``: the hybrid flow end to end against the embedded server.

Each row teaches one behaviour, and the rows are ordered so that each one shows what it
says: a revoked token still passing on a cached answer, ``forget()`` ending that, local
JWT verification not seeing a revocation, and ``high_assurance`` seeing it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from ..errors import TokenGuardError
from .terminal import CommandError

if TYPE_CHECKING:
    from ..guard import TokenGuard
    from ..testing import AuthServer

__all__ = ["demo"]

_Row = tuple[str, str, str, str, str]


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


def _revoke(server: AuthServer, token: str) -> None:
    """Revoke through the real RFC 7009 endpoint."""
    import httpx

    httpx.post(
        server.revocation_endpoint,
        data={"token": token},
        auth=(server.client_id, server.client_secret),
        timeout=5,
    ).raise_for_status()


class _Table:
    """Validates, prints a line per validation, and keeps the rows for the summary."""

    def __init__(self, guard: TokenGuard) -> None:
        self.guard = guard
        self.rows: list[_Row] = []

    def run(self, kind: str, policy: str, token: str, note: str = "") -> None:
        challenge = ""
        started = time.perf_counter()
        try:
            info = self.guard.validate(token, policy)
            result = click.style("valid", fg="green") + (" (cached)" if info.cached else "")
            path: str = info.source
        except TokenGuardError as error:
            result = click.style(f"{error.status_code} {type(error).__name__}", fg="red")
            path = "refused"
            challenge = error.www_authenticate(realm="orders")
        elapsed = (time.perf_counter() - started) * 1000
        self.rows.append((kind, policy, path, result, f"{elapsed:.2f} ms"))
        padded = result + " " * max(0, 21 - len(click.unstyle(result)))
        click.echo(f"  {kind:<26} {policy:<12} {padded}  {note}".rstrip())
        if challenge:
            click.echo(f"      WWW-Authenticate: {challenge}")

    def summary(self) -> None:
        click.secho("\nsummary", bold=True)
        header = ("token", "policy", "path", "result", "time")
        rows = (header, *self.rows)
        widths = [max(len(click.unstyle(str(r[i]))) for r in rows) for i in range(5)]
        for row in rows:
            cells = [
                str(cell) + " " * (widths[i] - len(click.unstyle(str(cell))))
                for i, cell in enumerate(row)
            ]
            click.echo("  " + "  ".join(cells).rstrip())


@click.command()
@click.option(
    "--fleet",
    is_flag=True,
    help="Show two processes sharing one cache and one revocation on Redis "
    "(needs the redis extra).",
)
@click.option(
    "--redis-url",
    envvar="TOKENGUARD_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    show_envvar=True,
    help="The Redis of --fleet (if none answers there, a private redis-server is started "
    "when one is installed).",
)
def demo(fleet: bool, redis_url: str) -> None:
    """Start an embedded authorization server and show the hybrid flow end to end.

    Real tokens from its token endpoint are validated, cached, revoked (RFC 7009),
    forgotten and refused, one line each, then timed in a summary. Plain HTTP on
    loopback; nothing leaves this machine.
    """
    if fleet:
        try:
            import redis  # noqa: F401 - the fleet's one optional dependency
        except ImportError:
            raise CommandError(
                'demo --fleet needs the redis extra: pip install ".[redis]" in a tokenguard '
                "checkout (./dev demo --fleet installs it)"
            ) from None
        from .fleet_demo import run_fleet_demo

        run_fleet_demo(redis_url)
        return
    from ..client_auth import ClientSecretBasic
    from ..config import Issuer, Policy
    from ..guard import TokenGuard
    from ..testing import DEFAULT_AUDIENCE, AuthServer

    with AuthServer() as server:
        click.secho(f"embedded authorization server at {server.issuer}", bold=True)
        click.echo(
            'policies: "orders" (hybrid: JWTs verified locally, opaque tokens introspected, '
            'answers cached up to 60 s)\n          "orders-live" (high_assurance: '
            "every call also asks the server)"
        )
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
        with guard:
            table = _Table(guard)
            jwt_token = _token_from_endpoint(server, "jwt")
            opaque = _token_from_endpoint(server, "opaque")
            click.echo(
                "\ntokens issued by the token endpoint (client_credentials): one JWT, one opaque"
            )
            table.run("JWT (first sight)", "orders", jwt_token, "discovery, JWKS, verified locally")
            table.run("JWT (again)", "orders", jwt_token, "verified-token cache")
            table.run("opaque (first sight)", "orders", opaque, "RFC 7662 introspection")
            table.run("opaque (again)", "orders", opaque, "cached answer")

            _revoke(server, opaque)
            _revoke(server, jwt_token)
            click.echo("\nboth tokens revoked at the server (RFC 7009)")
            table.run(
                "opaque, revoked",
                "orders",
                opaque,
                "still the cached answer: it stands until the policy's bound (60 s)",
            )
            guard.forget(opaque)
            table.run(
                "opaque, revoked, forgotten",
                "orders",
                opaque,
                "guard.forget(token) dropped the cached answers: the server was asked",
            )
            table.run(
                "JWT, revoked",
                "orders",
                jwt_token,
                "verified locally: the server is not asked, so the revocation is not seen",
            )
            table.run(
                "JWT, revoked",
                "orders-live",
                jwt_token,
                "high assurance: verified locally and asked live",
            )

            click.echo("\ntokens minted with other claims")
            table.run(
                "JWT, expired",
                "orders",
                server.issue_jwt(scopes=["orders:read"], lifetime=-600),
            )
            table.run(
                "JWT, wrong audience",
                "orders",
                server.issue_jwt(scopes=["orders:read"], audience="urn:other"),
            )
            table.run("JWT, missing scope", "orders", server.issue_jwt(scopes=["orders:write"]))
    table.summary()
