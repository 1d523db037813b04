"""Issue 10: a bounded number of introspections in flight per issuer.

Random strings sent as tokens each cost an introspection; without a bound a flood of
them turns the resource server into a load generator against its authorization server.
Beyond ``max_concurrent_introspections`` a validation waits at most
``introspection_queue_wait`` and is refused with 503 and a ``Retry-After`` hint.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tokenguard import Settings, TokenGuard, TokenGuardError, TokenInfo, ValidationUnavailable
from tokenguard.shells.limits import Capacity
from tokenguard.testing import AuthServer, guard_for

from ..conftest import Driver

SLACK = 1.5


def _capped(server: AuthServer, slots: int, wait: float) -> TokenGuard:
    return guard_for(
        server,
        settings={"max_concurrent_introspections": slots, "introspection_queue_wait": wait},
    )


def test_beyond_the_cap_validations_are_refused_after_a_short_wait(
    auth_server: AuthServer, check: Driver
) -> None:
    guard = _capped(auth_server, slots=2, wait=0.2)
    auth_server.set_delay(1.0, "introspection")  # the first two hold their slots
    tokens = [auth_server.issue_opaque() for _ in range(6)]
    began = time.monotonic()
    results = check.many(guard, tokens)
    elapsed = time.monotonic() - began
    served = [r for r in results if isinstance(r, TokenInfo)]
    refused = [r for r in results if isinstance(r, ValidationUnavailable)]
    assert len(served) == 2, results
    assert len(refused) == 4, results
    for error in refused:
        assert error.status_code == 503
        assert error.retry_after == 1
        assert "in progress" in error.description
    assert auth_server.request_count("introspection") == 2  # the refused never reached it
    assert elapsed < 1.0 + SLACK


def test_waiters_are_served_as_slots_free(auth_server: AuthServer, check: Driver) -> None:
    guard = _capped(auth_server, slots=1, wait=5.0)
    auth_server.set_delay(0.15, "introspection")
    tokens = [auth_server.issue_opaque() for _ in range(4)]
    began = time.monotonic()
    results = check.many(guard, tokens)
    assert all(isinstance(r, TokenInfo) for r in results), results
    assert auth_server.request_count("introspection") == 4
    assert time.monotonic() - began >= 4 * 0.15  # one at a time


def test_one_shared_request_takes_one_slot(auth_server: AuthServer, check: Driver) -> None:
    """Validations of the same token wait for one request (single-flight): they take no
    slot of their own, so a popular token is never refused for being popular."""
    guard = _capped(auth_server, slots=1, wait=0.0)
    auth_server.set_delay(0.3, "introspection")
    token = auth_server.issue_opaque()
    results = check.many(guard, [token] * 50)
    assert all(isinstance(r, TokenInfo) for r in results), results[:3]
    assert auth_server.request_count("introspection") == 1


def test_the_cap_is_shared_by_threads_and_event_loops(auth_server: AuthServer) -> None:
    guard = _capped(auth_server, slots=1, wait=0.1)
    auth_server.set_delay(1.0, "introspection")
    held: list[object] = []

    def hold_the_slot() -> None:
        async def one() -> TokenInfo:
            try:
                return await guard.avalidate(auth_server.issue_opaque())
            finally:
                await guard.aclose()

        held.append(asyncio.run(one()))

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    time.sleep(0.3)  # the async validation has the only slot
    with pytest.raises(ValidationUnavailable) as refused:
        guard.validate(auth_server.issue_opaque())
    holder.join(timeout=10)
    assert refused.value.retry_after == 1
    assert len(held) == 1
    assert isinstance(held[0], TokenInfo)
    guard.close()


def test_settings_bounds() -> None:
    assert Settings().max_concurrent_introspections == 64
    assert Settings().introspection_queue_wait == 0.5
    for bad in ({"max_concurrent_introspections": 0}, {"introspection_queue_wait": -1}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


def test_refusals_are_typed_errors_with_the_retry_hint_kept_on_copies() -> None:
    import copy

    error = ValidationUnavailable("busy", retry_after=1)
    assert isinstance(error, TokenGuardError)
    assert copy.copy(error).retry_after == 1
    assert ValidationUnavailable().retry_after is None


# -- the capacity itself --------------------------------------------------------------


def test_newest_waiter_is_served_first() -> None:
    """Under overload, every waiter that waits the whole time is refused whatever the
    order; serving the newest first means the served ones are served at once."""
    capacity = Capacity(1, "test")
    assert capacity.acquire(time.monotonic() + 1)
    order: list[str] = []

    def wait(name: str) -> None:
        if capacity.acquire(time.monotonic() + 10):
            order.append(name)
            capacity.release()

    older = threading.Thread(target=wait, args=("older",))
    older.start()
    time.sleep(0.1)
    newer = threading.Thread(target=wait, args=("newer",))
    newer.start()
    time.sleep(0.1)
    capacity.release()
    older.join(10)
    newer.join(10)
    assert order == ["newer", "older"]
    assert capacity.held == 0


def test_a_waiter_that_times_out_takes_nothing() -> None:
    capacity = Capacity(1, "test")
    assert capacity.acquire(time.monotonic() + 1)
    began = time.monotonic()
    assert not capacity.acquire(time.monotonic() + 0.1)
    assert 0.05 < time.monotonic() - began < 0.1 + SLACK
    capacity.release()
    assert capacity.held == 0


def test_a_cancelled_task_gives_back_a_slot_granted_to_it() -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        capacity = Capacity(1, "test")
        assert await capacity.aacquire(loop.time() + 1)
        waiter = asyncio.ensure_future(capacity.aacquire(loop.time() + 10))
        await asyncio.sleep(0.05)
        capacity.release()  # granted to the waiter (wakes it on the next loop turn) ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return capacity.held

    assert asyncio.run(scenario()) == 0
