"""Redis trouble never fails a validation (a private redis-server, stopped, paused and
restarted); revocations made meanwhile are enforced after recovery. The same with real
worker processes under load: ``benchmarks/fleet_bench.py`` section 3 (its quick run is
tests/fleet/test_bench_smoke.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tokenguard import InactiveToken, TokenGuard
from tokenguard.testing import AuthServer

from .conftest import RedisServer, fleet_guard


def wait_until(condition: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def refused(guard: TokenGuard, token: str) -> bool:
    try:
        guard.validate(token)
    except InactiveToken:
        return True
    return False


def test_stopped_redis_fails_nothing_and_revocations_catch_up(
    auth_server: AuthServer, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenguard.fleet")
    url = redis_server.url
    a = fleet_guard(auth_server, url, "outage")
    b = fleet_guard(auth_server, url, "outage")
    try:
        assert a.validate(auth_server.issue_opaque()).subject == "user-1"
        victim = auth_server.issue_opaque(subject="victim")
        b.validate(victim)
        redis_server.stop()
        started = time.monotonic()
        for _ in range(20):  # new tokens: every one misses locally and would ask Redis
            assert a.validate(auth_server.issue_opaque()).subject == "user-1"
            assert a.validate(auth_server.issue_jwt()).subject == "user-1"
        assert time.monotonic() - started < 10
        a.revoke(victim)  # Redis is down: kept in a's outbox
        assert refused(a, victim)
        assert not refused(b, victim)  # b cannot know yet
        redis_server.start()
        wait_until(lambda: refused(b, victim))  # a wrote it back, b caught up
        c = fleet_guard(auth_server, url, "outage")  # and it is stored for newcomers
        assert refused(c, victim)
        c.close()
    finally:
        a.close()
        b.close()
    outages = [r for r in caplog.records if "validating with local caches" in r.getMessage()]
    recoveries = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(outages) == 1  # logged once each way, per guard that saw it
    assert len(recoveries) <= 1


def test_paused_redis_costs_a_bounded_delay(
    auth_server: AuthServer, redis_server: RedisServer
) -> None:
    guard = fleet_guard(auth_server, redis_server.url, "paused", timeout=0.1)
    try:
        guard.validate(auth_server.issue_opaque())
        redis_server.pause()  # accepts connections, answers nothing
        slowest = 0.0
        for _ in range(15):
            started = time.monotonic()
            assert guard.validate(auth_server.issue_opaque()).subject == "user-1"
            slowest = max(slowest, time.monotonic() - started)
        # At most a couple of Redis timeouts per validation, and once the breaker is
        # open none at all.
        assert slowest < 1.5
        assert guard.fleet is not None
        assert guard.fleet.counters.failures >= 3
        redis_server.resume()
        wait_until(lambda: guard.fleet is not None and guard.fleet.in_sync)
    finally:
        guard.close()


def test_starting_without_redis_then_catching_up(
    auth_server: AuthServer, redis_server: RedisServer
) -> None:
    url = redis_server.url
    redis_server.stop()
    started = time.monotonic()
    late = fleet_guard(auth_server, url, "late", startup_timeout=0.5)
    assert time.monotonic() - started < 3
    try:
        token = auth_server.issue_opaque()
        assert late.validate(token).subject == "user-1"
        redis_server.start()
        other = fleet_guard(auth_server, url, "late")
        other.revoke(token)
        other.close()
        wait_until(lambda: refused(late, token))
    finally:
        late.close()
