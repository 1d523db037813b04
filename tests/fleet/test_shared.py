"""Two guards in one fleet (the machine's Redis): one cache, one revocation."""

from __future__ import annotations

import time

import pytest

from tokenguard import InactiveToken, TokenGuard
from tokenguard.testing import AuthServer

from ..conftest import Driver
from .conftest import fleet_guard


def eventually_refused(check: Driver, guard: TokenGuard, token: str, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            check(guard, token)
        except InactiveToken:
            return
        assert time.monotonic() < deadline, "the revocation did not arrive"
        time.sleep(0.01)


def test_answer_fetched_by_one_serves_the_other(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_opaque(scopes=["orders:read"], subject="carol")
        assert check(a, token).subject == "carol"
        info = check(b, token)
        assert info.subject == "carol"
        assert info.cached  # from the fleet cache, not the AS
        assert auth_server.request_count("introspection") == 1
        assert b.fleet is not None
        assert b.fleet.counters.shared_hits == 1
    finally:
        a.close()
        b.close()


def test_revocation_reaches_the_other_guard(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        opaque = auth_server.issue_opaque(scopes=["orders:read"])
        jwt = auth_server.issue_jwt(subject="dave", issued_at=time.time() - 5)
        check(b, opaque)
        check(b, jwt)
        a.revoke(opaque)
        a.revoke_subject("dave")
        eventually_refused(check, b, opaque)
        eventually_refused(check, b, jwt)
        # A guard that starts later loads the stored revocations before it serves.
        c = fleet_guard(auth_server, redis_url, prefix)
        with pytest.raises(InactiveToken):
            check(c, opaque)
        with pytest.raises(InactiveToken):
            check(c, jwt)
        c.close()
    finally:
        a.close()
        b.close()


def test_forget_ignores_a_shared_answer_fetched_before_it(
    auth_server: AuthServer, redis_url: str, prefix: str, check: Driver
) -> None:
    """Rule 3 with a fleet: after B forgets a token, the answer A put in Redis before
    that is neither served nor cached by B: B asks the AS again."""
    a = fleet_guard(auth_server, redis_url, prefix)
    b = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_opaque(scopes=["orders:read"])
        check(a, token)  # the answer is in Redis now
        b.forget(token)
        assert not check(b, token).cached
        assert auth_server.request_count("introspection") == 2
    finally:
        a.close()
        b.close()
