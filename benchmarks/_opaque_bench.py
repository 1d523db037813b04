"""Opaque tokens against the embedded AuthServer: the guard the other sections share, and
how many requests a stampede of concurrent validations of one new token causes.

Introspection throughput is measured in :mod:`_introspection_bench`, against a faster
server in its own process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from _common import (
    AUDIENCE,
    REQUIRED_SCOPE,
    TOKEN_SCOPES,
    Budget,
    Table,
)

from tokenguard import ClientSecretBasic, Issuer, Policy, Settings, TokenGuard, TokenInfo
from tokenguard.testing import AuthServer

POLICY = "api"
STAMPEDE_DELAY = 0.2


class Endpoints(Protocol):
    """What a guard needs to know about an authorization server."""

    @property
    def issuer(self) -> str: ...
    @property
    def jwks_uri(self) -> str: ...
    @property
    def introspection_endpoint(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...


def opaque_guard(server: Endpoints, **settings: Any) -> TokenGuard:
    """Endpoints configured explicitly (no discovery); hybrid mode; one required scope."""
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                jwks_uri=server.jwks_uri,
                introspection_endpoint=server.introspection_endpoint,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name=POLICY, audience=AUDIENCE, required_scopes=[REQUIRED_SCOPE])],
        settings=Settings(**settings),
    )


def introspection_form(token: str) -> dict[str, str]:
    return {"token": token, "token_type_hint": "access_token"}


def check_answer(document: Any) -> None:
    if not (isinstance(document, dict) and document.get("active") is True):
        raise AssertionError("introspection did not answer active")


# -- stampedes: how many AS requests N concurrent validations of one new token cause --


@dataclass
class Stampede:
    succeeded: int
    requests: int  # to the endpoint the token needs (introspection or jwks)
    metadata_requests: int


def with_threads(validate: Callable[[], TokenInfo], count: int) -> int:
    barrier = threading.Barrier(count)
    ok: list[bool] = []

    def one() -> None:
        barrier.wait(timeout=60)
        try:
            validate()
        except Exception:
            ok.append(False)
        else:
            ok.append(True)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return sum(ok)


async def with_tasks(guard: TokenGuard, token: str, count: int) -> int:
    try:
        results = await asyncio.gather(
            *(guard.avalidate(token, POLICY) for _ in range(count)), return_exceptions=True
        )
    finally:
        await guard.aclose()
    return sum(isinstance(r, TokenInfo) for r in results)


def stampede(server: AuthServer, *, kind: str, runner: str, delay: float, count: int) -> Stampede:
    """``count`` simultaneous validations of one token the (fresh) guard has never seen."""
    endpoint = "introspection" if kind == "opaque" else "jwks"
    guard = opaque_guard(server)  # fresh: no cached keys, answers or tokens
    if kind == "opaque":
        token = server.issue_opaque(scopes=TOKEN_SCOPES, lifetime=3600)
    else:
        token = server.issue_jwt(alg="ES256", scopes=TOKEN_SCOPES, lifetime=3600)
    server.set_delay(delay, endpoint)
    before = server.request_count(endpoint), server.request_count("metadata")
    try:
        if runner == "threads":
            with guard:
                succeeded = with_threads(lambda: guard.validate(token, POLICY), count)
        else:
            succeeded = asyncio.run(with_tasks(guard, token, count))
    finally:
        server.set_delay(0, endpoint)
    return Stampede(
        succeeded,
        server.request_count(endpoint) - before[0],
        server.request_count("metadata") - before[1],
    )


def stampede_table(server: AuthServer, budget: Budget) -> Table:
    table = Table(
        f"Stampede: {budget.stampede:,} concurrent validations of one new token",
        ("token", "concurrency", "AS answer delay", "succeeded", "AS requests"),
        left=2,
    )
    metadata = 0
    for kind, endpoint in (("opaque", "introspection"), ("JWT (ES256)", "jwks")):
        for runner in ("threads", "asyncio tasks"):
            for delay in (STAMPEDE_DELAY,) if budget.quick else (0.0, STAMPEDE_DELAY):
                result = stampede(
                    server,
                    kind="opaque" if kind == "opaque" else "jwt",
                    runner="threads" if runner == "threads" else "tasks",
                    delay=delay,
                    count=budget.stampede,
                )
                metadata += result.metadata_requests
                table.rows.append(
                    (
                        f"{kind}: {endpoint}",
                        f"{budget.stampede:,} {runner}",
                        f"{delay * 1000:.0f} ms",
                        f"{result.succeeded:,}",
                        f"{result.requests:,}",
                    )
                )
    table.notes.append(
        "a fresh guard each time (JWT: JWKS not yet fetched); AS requests counted with "
        "AuthServer.request_count before/after; metadata requests in all these runs: "
        f"{metadata} (the endpoints are configured, so no discovery)"
    )
    table.notes.append(
        "threads start together on a threading.Barrier; tasks are one asyncio.gather; "
        "the delay keeps the first request in flight while the others arrive"
    )
    return table
