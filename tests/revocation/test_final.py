"""Issue 14 rule 3: a revocation is final from the moment it returns.

Real loopback authorization server, both shells. Each test fails on the code before the
rule: a forget during an in-flight introspection was undone by the older answer, and a
high-assurance validation that started later joined the older request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tokenguard import InactiveToken, Policy, TokenGuard, TokenInfo
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, guard_for

DELAY = 0.6


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Runner:
    """Runs validations in the background: threads (sync) or tasks on one event loop
    running in its own thread (async), so concurrent async calls share the guard's
    flights as they would in a server."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        if kind == "async":
            self.thread.start()

    def start(self, guard: TokenGuard, token: str, policy: str | None = None) -> Any:
        """Start one validation; returns a function that waits for its result or error."""
        if self.kind == "async":
            future = asyncio.run_coroutine_threadsafe(guard.avalidate(token, policy), self.loop)

            def result() -> Any:
                try:
                    return future.result(30)
                except Exception as error:
                    return error

            return result
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = guard.validate(token, policy)
            except Exception as error:
                box["value"] = error

        thread = threading.Thread(target=target)
        thread.start()

        def join() -> Any:
            thread.join(30)
            return box["value"]

        return join

    def close(self, guard: TokenGuard) -> None:
        if self.kind == "async":
            asyncio.run_coroutine_threadsafe(guard.aclose(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.loop.close()
        guard.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_revoke_during_introspection_is_final(auth_server: AuthServer, kind: str) -> None:
    """The AS still says active (it was not told); the guard's revocation wins over the
    answer that was on its way, and nothing of it is cached."""
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(scopes=["orders:read"])
    auth_server.set_delay(DELAY, "introspection")
    runner = Runner(kind)
    join = runner.start(guard, token)
    wait_for(lambda: auth_server.request_count("introspection") == 1)  # the request is out
    guard.revoke(token)
    assert isinstance(join(), InactiveToken)
    auth_server.set_delay(0, "introspection")
    with pytest.raises(InactiveToken):
        guard.validate(token)
    runner.close(guard)


def test_cutoff_during_introspection_is_final(auth_server: AuthServer, kind: str) -> None:
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(scopes=["orders:read"], subject="mallory")
    auth_server.set_delay(DELAY, "introspection")
    runner = Runner(kind)
    join = runner.start(guard, token)
    wait_for(lambda: auth_server.request_count("introspection") == 1)
    guard.revoke_subject("mallory")
    assert isinstance(join(), InactiveToken)
    auth_server.set_delay(0, "introspection")
    with pytest.raises(InactiveToken):
        guard.validate(token)
    runner.close(guard)


def test_answer_from_before_forget_is_never_cached(auth_server: AuthServer, kind: str) -> None:
    """The token stays active at the AS: the validation in flight asks again, and the
    next one is served from the cache of that second, later answer."""
    guard = guard_for(auth_server)
    token = auth_server.issue_opaque(scopes=["orders:read"])
    auth_server.set_delay(DELAY, "introspection")
    runner = Runner(kind)
    join = runner.start(guard, token)
    wait_for(lambda: auth_server.request_count("introspection") == 1)
    guard.forget(token)
    assert isinstance(join(), TokenInfo)
    assert auth_server.request_count("introspection") == 2
    auth_server.set_delay(0, "introspection")
    assert guard.validate(token).cached
    assert auth_server.request_count("introspection") == 2
    runner.close(guard)


def test_high_assurance_never_joins_an_older_request(auth_server: AuthServer, kind: str) -> None:
    guard = guard_for(auth_server, Policy(name="live", audience=AUDIENCE, mode="high_assurance"))
    token = auth_server.issue_opaque(scopes=["orders:read"])
    auth_server.set_delay(DELAY, "introspection")
    runner = Runner(kind)
    first = runner.start(guard, token)
    wait_for(lambda: auth_server.request_count("introspection") == 1)
    auth_server.revoke(token)  # revoked after the first request was sent
    second = runner.start(guard, token)
    first()
    assert isinstance(second(), InactiveToken)
    # The second call was answered by a request of its own, sent after it began.
    assert auth_server.request_count("introspection") == 2
    runner.close(guard)


def test_high_assurance_stampede_still_shares_one_request(auth_server: AuthServer) -> None:
    """Validations that all began before the request was sent may share it (tasks
    gathered at once all begin before the flight's task sends; threads released by a
    barrier mostly begin after the first one sent, and then rightly ask again)."""
    guard = guard_for(auth_server, Policy(name="live", audience=AUDIENCE, mode="high_assurance"))
    token = auth_server.issue_opaque(scopes=["orders:read"])
    auth_server.set_delay(0.3, "introspection")

    async def all_at_once() -> list[Any]:
        try:
            return await asyncio.gather(*(guard.avalidate(token) for _ in range(50)))
        finally:
            await guard.aclose()

    results = asyncio.run(all_at_once())
    assert all(isinstance(r, TokenInfo) for r in results)
    assert auth_server.request_count("introspection") == 1
