"""``tokenguard stats``: what a running gateway's guard has counted (its ``/stats``).

Reads ``URL/stats`` (``guard.stats()`` as JSON) and prints it as a short report, or as
JSON with ``--json``. A gateway serves ``/stats`` to loopback clients, or to the bearer
of its ``[gateway] stats_token_env`` token: give that token here in an environment
variable (``--token-env``), never on the command line. Everything the answer holds is
escaped before it is printed. Exit codes: 0 shown, 2 usage, 3 the gateway did not answer
(or not with stats).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from .terminal import EXIT_UNAVAILABLE, CommandError, echo_json, safe

if TYPE_CHECKING:
    from ..stats import GuardStats

__all__ = ["stats"]

_MAX_BYTES = 4 * 1024 * 1024


def _fetch(url: str, token: str | None, timeout: float) -> GuardStats:
    import httpx
    from pydantic import ValidationError

    from ..stats import GuardStats

    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    target = url.rstrip("/") + "/stats"
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("GET", target, headers=headers) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_BYTES:
                    raise _Unavailable("the answer is too large")
            status = response.status_code
    except httpx.HTTPError as error:
        raise _Unavailable(f"no answer from {safe(target)} ({type(error).__name__})") from None
    if status == 403:
        raise _Unavailable(
            "the gateway refused: /stats answers loopback clients, or the bearer of its "
            "stats token (--token-env)"
        )
    if status != 200:
        raise _Unavailable(f"{safe(target)} answered HTTP {status}")
    try:
        return GuardStats.model_validate_json(body)
    except ValidationError:
        raise _Unavailable(f"{safe(target)} did not answer with tokenguard stats") from None


class _Unavailable(click.ClickException):
    exit_code = EXIT_UNAVAILABLE

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


def _ratio(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{hits / total:6.1%}" if total else "     -"


def _report(found: GuardStats) -> None:
    echo = click.echo
    total = found.total()
    passed = found.total(result="success")
    echo(click.style(f"validations: {total}", bold=True) + f" ({passed} passed)")
    for v in found.validations:
        error = f" {safe(v.error_type)}" if v.error_type else ""
        cached = " cached" if v.cached else ""
        echo(f"  {v.count:>10}  {safe(v.policy)}  {v.result}{error}  via {v.path}{cached}")
    echo(click.style("caches", bold=True) + "          hits      misses   ratio")
    for name in ("verified", "introspection", "jwks", "metadata", "fleet"):
        cache = getattr(found.caches, name)
        ratio = _ratio(cache.hits, cache.misses)
        echo(f"  {name:<13} {cache.hits:>10}  {cache.misses:>10}  {ratio}")
    for issuer in found.issuers:
        echo(click.style(f"issuer {safe(issuer.issuer)}", bold=True))
        echo(
            f"  key set: {issuer.jwks_refreshes} refreshed, "
            f"{issuer.jwks_refresh_failures} failed, stale keys used {issuer.stale_keys_used}"
        )
        echo(f"  metadata: {issuer.metadata_requests} requests, {issuer.metadata_failures} failed")
        line = f"  introspection: {issuer.introspections} requests"
        if issuer.introspections:
            mean = issuer.introspection_seconds / issuer.introspections * 1000
            line += f" (mean {mean:.1f} ms, max {issuer.introspection_max_seconds * 1000:.1f} ms)"
        line += (
            f", {issuer.introspection_failures} failed, "
            f"{issuer.introspections_refused} refused (budget full)"
        )
        echo(line)
    joins = ", ".join(f"{safe(k)} {n}" for k, n in found.flight_joins.items()) or "none"
    timeouts = ", ".join(f"{safe(k)} {n}" for k, n in found.flight_timeouts.items())
    echo(
        f"requests shared (flight joins): {joins}"
        + (f"; timed out: {timeouts}" if timeouts else "")
    )
    fleet = found.fleet
    if fleet is None:
        echo("fleet: none")
    else:
        state = click.style("OPEN (Redis skipped)", fg="red") if fleet.circuit_open else "closed"
        echo(
            f"fleet: circuit {state}, {fleet.errors} Redis errors, {fleet.circuit_trips} trips, "
            f"shared answers {fleet.shared_hits} hits / {fleet.shared_misses} misses, "
            f"{fleet.revocations_pending} revocations pending"
        )


@click.command()
@click.option(
    "--url",
    required=True,
    help="The gateway's address, e.g. http://127.0.0.1:8181 (its /stats is read).",
)
@click.option(
    "--token-env",
    metavar="NAME",
    help="The environment variable holding the gateway's stats token ([gateway] stats_token_env).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stats as one JSON object.")
@click.option(
    "--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True, help="Seconds."
)
def stats(url: str, token_env: str | None, as_json: bool, timeout: float) -> None:
    """Show what a running gateway's guard has counted: validations by policy and
    result, cache hit ratios, key-set refreshes, introspection latency, the fleet."""
    if not url.startswith(("http://", "https://")):
        raise CommandError("--url is an http:// or https:// address, e.g. http://127.0.0.1:8181")
    token = None
    if token_env is not None:
        token = os.environ.get(token_env)
        if not token:
            raise CommandError(f"the environment variable {safe(token_env)} is not set")
    found = _fetch(url, token, timeout)
    if as_json:
        echo_json(found.model_dump(mode="json"))
    else:
        _report(found)
