"""Issue 14, rule 6 (last bullet): one HTTP client per live event loop, and each closed.

A guard used from successive event loops (``asyncio.run`` per call, a loop per test or
per thread) used to replace its client on each new loop without closing the old one:
2,000 ``asyncio.run`` calls left thousands of ``ResourceWarning: unclosed socket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from tokenguard import TokenGuard
from tokenguard.testing import AuthServer, guard_for


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fds_settle_to(limit: int, timeout: float = 10.0) -> int:
    """The open descriptors once they are at most ``limit``, or after ``timeout``.

    The AuthServer runs in this process: the server's side of each connection is a
    descriptor here too, closed by its own thread a moment after the client closed its
    side (later still on a loaded machine). A client socket left open stays open, so
    waiting for the server's side cannot hide a leak."""
    deadline = time.monotonic() + timeout
    while (count := _open_fds()) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


class Warnings:
    """The ResourceWarnings emitted since the fixture started; :meth:`collected` runs the
    garbage collector first, so objects that were left open are reported."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self._caught = caught

    def collected(self) -> list[str]:
        gc.collect()
        return [str(w.message) for w in self._caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def resource_warnings() -> Iterator[Warnings]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield Warnings(caught)


@contextlib.contextmanager
def no_garbage_collection() -> Iterator[None]:
    """Sockets must be closed with their loop, not found later by the collector."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def guard(auth_server: AuthServer) -> Iterator[TokenGuard]:
    # No caches: every validation is a request on the current loop's client.
    guard = guard_for(auth_server, introspection_cache_ttl=0, verified_cache_ttl=0)
    yield guard
    asyncio.run(guard.aclose())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_asyncio_run_per_call_leaves_no_socket_behind(
    auth_server: AuthServer, guard: TokenGuard, resource_warnings: Warnings
) -> None:
    token = auth_server.issue_opaque(subject="loopy")
    asyncio.run(guard.avalidate(token))
    before = _open_fds()
    with no_garbage_collection():
        for _ in range(300):
            assert asyncio.run(guard.avalidate(token)).subject == "loopy"
        # Each loop's client was closed with its loop.
        assert _fds_settle_to(before + 2) <= before + 2
    assert auth_server.request_count("introspection") == 301
    assert resource_warnings.collected() == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_loops_closed_by_hand_have_their_sockets_closed_on_next_use(
    auth_server: AuthServer, guard: TokenGuard, resource_warnings: Warnings
) -> None:
    """A loop closed without finalizing its async generators (``loop.close()`` alone)
    cannot close its client; the next use of the guard from another loop closes the
    sockets the dead loop left."""
    token = auth_server.issue_opaque(subject="by-hand")
    warm = asyncio.new_event_loop()
    warm.run_until_complete(guard.avalidate(token))
    warm.close()
    before = _open_fds()
    with no_garbage_collection():
        for _ in range(50):
            loop = asyncio.new_event_loop()
            assert loop.run_until_complete(guard.avalidate(token)).subject == "by-hand"
            loop.close()
        assert asyncio.run(guard.avalidate(token)).subject == "by-hand"
        assert _fds_settle_to(before + 2) <= before + 2
    assert resource_warnings.collected() == []


def test_live_loops_in_two_threads_each_keep_their_own_client(
    auth_server: AuthServer, guard: TokenGuard, resource_warnings: Warnings
) -> None:
    """Two event loops running at once in two threads share one guard: each gets its own
    client (connections belong to the loop that made them) and keeps it while it lives."""
    token = auth_server.issue_opaque(subject="threads")
    results: list[str | None] = []
    errors: list[BaseException] = []

    async def many() -> None:
        for _ in range(20):
            results.append((await guard.avalidate(token)).subject)
            await asyncio.sleep(0)

    def run() -> None:
        try:
            asyncio.run(many())
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert results == ["threads"] * 40
    assert resource_warnings.collected() == []


def test_closing_inside_the_loop_leaves_nothing_behind(
    auth_server: AuthServer, resource_warnings: Warnings
) -> None:
    token = auth_server.issue_opaque(subject="tidy")

    async def tidy() -> str | None:
        async with guard_for(auth_server) as guard:
            return (await guard.avalidate(token)).subject

    assert asyncio.run(tidy()) == "tidy"
    assert resource_warnings.collected() == []
