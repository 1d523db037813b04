"""Issue 14, rule 2: every network exchange ends by its deadline, and so does everyone
waiting on it.

A real loopback server (:mod:`.stalling`) holds each request open in the ways a slow or
hostile server can: the status line and headers dribbled one byte at a time (each byte
well within any per-read timeout), ``100 Continue`` interim responses without end, or
nothing at all. Whatever it does, sync and async, with tokenguard's own clients and with
the caller's httpx clients, a validation ends with 503 at ``http_timeout``, and so does
every validation waiting on the same request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp  # noqa: F401 - imported before timing (the first async validation imports it)
import httpx
import pytest

from tokenguard import (
    ClientSecretBasic,
    Issuer,
    Policy,
    Settings,
    TokenGuard,
    TokenInfo,
    ValidationUnavailable,
)
from tokenguard.shells.aio import Clock, TaskFlights
from tokenguard.shells.limits import GiveUp
from tokenguard.shells.sync import ThreadFlights
from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

from ..conftest import Driver
from .stalling import Mode, StallingServer

TIMEOUT = 0.5
# The server holds each request for 6 s: a client bounded only per read waits that long.
HOLD = 6.0
# Time allowed past the deadline before the validation must have ended (a loaded machine).
SLACK = 1.5


@pytest.fixture(params=["own client", "caller's httpx client"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _guard(server: AuthServer, stalling: StallingServer, client_kind: str) -> TokenGuard:
    clients: dict[str, Any] = {}
    if client_kind != "own client":
        clients = {"http_client": httpx.Client(), "async_http_client": httpx.AsyncClient()}
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                jwks_uri=stalling.url("/jwks"),
                introspection_endpoint=stalling.url("/introspect"),
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name="api", audience=DEFAULT_AUDIENCE)],
        settings=Settings(http_timeout=TIMEOUT),
        **clients,
    )


@pytest.fixture
def stalling(request: pytest.FixtureRequest) -> Iterator[StallingServer]:
    mode: Mode = request.param
    interval = 0.05 if mode == "continue" else 0.25
    with StallingServer(mode, interval=interval, hold=HOLD) as server:
        yield server


def _timed(check: Driver, guard: TokenGuard, token: str) -> tuple[object, float]:
    began = time.monotonic()
    try:
        result: object = check(guard, token, "api")
    except ValidationUnavailable as error:
        result = error
    return result, time.monotonic() - began


@pytest.mark.parametrize("stalling", ["dribble", "continue", "silent"], indirect=True)
@pytest.mark.parametrize("token_kind", ["opaque (introspection)", "JWT (JWKS)"])
def test_a_stalled_exchange_ends_at_the_deadline(
    auth_server_session: AuthServer,
    stalling: StallingServer,
    check: Driver,
    client_kind: str,
    token_kind: str,
) -> None:
    guard = _guard(auth_server_session, stalling, client_kind)
    server = auth_server_session
    token = server.issue_opaque() if token_kind.startswith("opaque") else server.issue_jwt()
    result, elapsed = _timed(check, guard, token)
    assert isinstance(result, ValidationUnavailable), result
    assert result.status_code == 503
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.1f}s with http_timeout {TIMEOUT}s"
    assert stalling.requests <= 1  # one request (under load it may not have been read yet)


@pytest.mark.parametrize("stalling", ["dribble", "continue"], indirect=True)
def test_waiters_behind_a_stalled_fetch_end_at_its_deadline(
    auth_server_session: AuthServer, stalling: StallingServer, check: Driver, client_kind: str
) -> None:
    """16 validations of new JWTs from one issuer wait for one JWKS fetch that the server
    stalls: every one of them ends with 503 by the fetch's deadline (the review saw 16 of
    16 still blocked after 25 s with http_timeout 2 s)."""
    guard = _guard(auth_server_session, stalling, client_kind)
    tokens = [auth_server_session.issue_jwt() for _ in range(16)]
    began = time.monotonic()
    results = check.many(guard, tokens, "api")
    elapsed = time.monotonic() - began
    assert all(isinstance(r, ValidationUnavailable) for r in results), results
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.1f}s with http_timeout {TIMEOUT}s"
    assert stalling.requests <= 1  # one request (under load it may not have been read yet)


def test_the_next_validation_after_a_stall_succeeds(auth_server: AuthServer, check: Driver) -> None:
    """A stalled exchange is abandoned without poisoning the connection pool: the next
    request to the same server, now answering, succeeds."""
    guard = TokenGuard(
        issuers=[
            Issuer(
                auth_server.issuer,
                client_auth=ClientSecretBasic(auth_server.client_id, auth_server.client_secret),
                introspection_endpoint=auth_server.introspection_endpoint,
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name="api", audience=DEFAULT_AUDIENCE)],
        settings=Settings(http_timeout=TIMEOUT),
    )
    assert isinstance(check(guard, auth_server.issue_opaque(), "api"), TokenInfo)
    auth_server.set_delay(TIMEOUT + 1.0, "introspection")
    result, elapsed = _timed(check, guard, auth_server.issue_opaque())
    assert isinstance(result, ValidationUnavailable)
    assert elapsed < TIMEOUT + SLACK
    auth_server.set_delay(0, "introspection")
    assert isinstance(check(guard, auth_server.issue_opaque(), "api"), TokenInfo)


# -- the single-flight bound itself, whatever holds the leader ------------------------


def test_a_thread_waiting_on_another_threads_fetch_gives_up_at_its_deadline() -> None:
    """The leader overruns its deadline (something other than the exchange holds it: a
    slow DNS server, say); a thread that joined its flight still ends by the deadline."""
    flights = ThreadFlights()
    release = threading.Event()
    deadline = time.monotonic() + 0.3
    joined: list[object] = []

    def leader_work(_deadline: float) -> str:
        release.wait(5)
        return "late"

    leader = threading.Thread(target=lambda: flights.run("k", deadline, leader_work))
    leader.start()
    time.sleep(0.05)  # the leader is in its flight

    began = time.monotonic()
    try:
        flights.run("k", time.monotonic() + 60, lambda _d: "never called")
    except GiveUp as error:
        joined.append(error.why)
    waited = time.monotonic() - began
    release.set()
    leader.join()
    assert joined == ["overdue"]
    assert waited < 0.3 + SLACK


def test_a_task_waiting_on_another_tasks_fetch_gives_up_at_its_deadline() -> None:
    async def scenario() -> tuple[list[str], float]:
        flights = TaskFlights()
        release = asyncio.Event()

        async def leader_work(_clock: Clock) -> str:
            await release.wait()
            return "late"

        loop = asyncio.get_running_loop()
        leader = asyncio.ensure_future(flights.run("k", Clock(loop.time() + 0.3), leader_work))
        await asyncio.sleep(0.05)
        began = loop.time()
        outcome: list[str] = []
        try:
            await flights.run("k", Clock(loop.time() + 60), leader_work)
        except GiveUp as error:
            outcome.append(error.why)
        waited = loop.time() - began
        release.set()
        assert await leader == "late"  # the leader itself was not cut short by the waiter
        return outcome, waited

    outcome, waited = asyncio.run(scenario())
    assert outcome == ["overdue"]
    assert waited < 0.3 + SLACK
