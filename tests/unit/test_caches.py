"""caches.py: the introspection cache and the verified-token cache."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory

from tokenguard.core.caches import Generations, IntrospectionCache, VerifiedCache, token_digest
from tokenguard.core.claims import read_claims, to_token_info
from tokenguard.core.introspection import IntrospectionRecord
from tokenguard.models import TokenInfo

ISS = "https://as.example"
D1 = token_digest("token-1")
D2 = token_digest("token-2")


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    # The introspection cache expires entries on the wall clock (like a token's exp).
    with freeze_time("2030-01-01T00:00:00Z") as frozen:
        yield frozen


def active(fetched_at: float, **claims: object) -> IntrospectionRecord:
    return IntrospectionRecord(active=True, claims=read_claims(dict(claims)), fetched_at=fetched_at)


def inactive(fetched_at: float) -> IntrospectionRecord:
    return IntrospectionRecord(active=False, claims=None, fetched_at=fetched_at)


def cache(size: int = 10) -> IntrospectionCache:
    return IntrospectionCache(size, max_active_ttl=60, max_inactive_ttl=10)


def get(
    c: IntrospectionCache,
    now: float,
    digest: bytes = D1,
    active_age: float = 60,
    inactive_age: float = 10,
) -> IntrospectionRecord | None:
    return c.get(ISS, digest, now, max_active_age=active_age, max_inactive_age=inactive_age)


def test_token_digest() -> None:
    assert token_digest("abc") == bytes.fromhex(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert len(D1) == 32
    assert D1 != D2


# -- IntrospectionCache.until ---------------------------------------------------------------


def test_until_rules() -> None:
    c = cache()
    assert c.until(active(100.0)) == 160.0  # no exp: max ttl
    assert c.until(active(100.0, exp=130)) == 130  # exp sooner than ttl
    assert c.until(active(100.0, exp=1000)) == 160.0  # ttl sooner than exp
    assert c.until(inactive(100.0)) == 110.0
    assert c.until(IntrospectionRecord(active=True, claims=None, fetched_at=5.0)) == 65.0


# -- IntrospectionCache put / get ------------------------------------------------------------


def test_active_hit_and_expiry(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    record = active(now, sub="alice")
    c.put(ISS, D1, record)
    assert len(c) == 1
    assert get(c, now) == record  # rebuilt from the compact entry
    assert get(c, now + 59.9) == record
    assert get(c, now + 60) is None
    assert get(c, now, digest=D2) is None
    assert c.get("https://other.example", D1, now, max_active_age=60, max_inactive_age=10) is None


def test_active_bounded_by_exp(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now, exp=now + 5))
    assert get(c, now + 4.9) is not None
    assert get(c, now + 5) is None


def test_active_with_exp_already_passed_not_stored(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now, exp=now))
    c.put(ISS, D2, active(now, exp=now - 10))
    assert len(c) == 0
    assert get(c, now) is None


def test_inactive_short(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    record = inactive(now)
    c.put(ISS, D1, record)
    assert get(c, now + 9.9) == record
    assert get(c, now + 10) is None


def test_per_policy_max_age(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now))
    c.put(ISS, D2, inactive(now))
    # A stricter policy sees the same entry as too old.
    assert get(c, now + 20, active_age=30) is not None
    assert get(c, now + 31, active_age=30) is None
    assert get(c, now + 31, active_age=60) is not None
    assert get(c, now + 5, digest=D2, inactive_age=3) is None
    assert get(c, now + 2, digest=D2, inactive_age=3) is not None
    # Age 0 policy (e.g. high_assurance): only the very same instant.
    assert get(c, now, active_age=0) is not None
    assert get(c, now + 0.001, active_age=0) is None


def test_clock_jump_backwards_is_a_miss(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now))
    assert get(c, now - 1) is None
    assert get(c, now) is not None


def test_wall_clock_expiry_drops_entries(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now))
    clock.tick(61)
    # Even asked with an old "now", the TLRU has dropped the entry on the wall clock.
    assert get(c, now + 1) is None


def test_disabled_when_size_zero(clock: FrozenDateTimeFactory) -> None:
    c = cache(size=0)
    now = time.time()
    c.put(ISS, D1, active(now))
    assert len(c) == 0
    assert get(c, now) is None


def test_zero_ttl_never_stored(clock: FrozenDateTimeFactory) -> None:
    c = IntrospectionCache(10, max_active_ttl=0, max_inactive_ttl=0)
    now = time.time()
    c.put(ISS, D1, active(now))
    c.put(ISS, D2, inactive(now))
    assert len(c) == 0


def test_forget(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now))
    c.put("https://b.example", D1, active(now))
    c.put(ISS, D2, active(now))
    c.forget(D1, [ISS, "https://b.example", "https://unknown.example"])
    assert get(c, now) is None
    assert get(c, now, digest=D2) is not None
    assert len(c) == 1


def test_bounded(clock: FrozenDateTimeFactory) -> None:
    c = cache(size=3)
    now = time.time()
    for i in range(10):
        c.put(ISS, token_digest(f"t{i}"), active(now))
    assert 2 <= len(c) <= 3  # the older half goes at once (Generations)
    assert get(c, now, digest=token_digest("t9")) is not None
    assert get(c, now, digest=token_digest("t0")) is None


def test_put_replaces(clock: FrozenDateTimeFactory) -> None:
    c = cache()
    now = time.time()
    c.put(ISS, D1, active(now))
    c.put(ISS, D1, inactive(now + 1))
    record = get(c, now + 1)
    assert record is not None
    assert record.active is False


# -- VerifiedCache ------------------------------------------------------------------------


def info(sub: str = "alice") -> TokenInfo:
    return to_token_info(read_claims({"sub": sub}), source="jwt", issuer=ISS, token_type="at+jwt")


POLICIES = ("api", "a", "b", "c", "other-policy")


def test_verified_hit_marks_cached() -> None:
    c = VerifiedCache(10, POLICIES)
    original = info()
    c.put(D1, "api", original, not_after=200.0, now=100.0)
    hit = c.get(D1, "api", 150.0)
    assert hit is not None
    assert hit.cached is True
    assert original.cached is False  # the caller's object is untouched
    assert hit.subject == "alice"
    assert hit.claims == original.claims
    assert c.get(D1, "other-policy", 150.0) is None
    assert c.get(D2, "api", 150.0) is None


def test_verified_expiry() -> None:
    c = VerifiedCache(10, POLICIES)
    c.put(D1, "api", info(), not_after=200.0, now=100.0)
    assert c.get(D1, "api", 199.999) is not None
    assert c.get(D1, "api", 200.0) is None
    assert len(c) == 0  # an expired entry is dropped on read
    assert c.get(D1, "api", 150.0) is None


def test_verified_not_stored_when_already_expired() -> None:
    c = VerifiedCache(10, POLICIES)
    c.put(D1, "api", info(), not_after=100.0, now=100.0)
    c.put(D2, "api", info(), not_after=50.0, now=100.0)
    assert len(c) == 0


def test_verified_disabled() -> None:
    c = VerifiedCache(0, POLICIES)
    c.put(D1, "api", info(), not_after=200.0, now=100.0)
    assert c.get(D1, "api", 150.0) is None
    assert len(c) == 0


def test_verified_forget() -> None:
    c = VerifiedCache(10, POLICIES)
    for policy in ("a", "b", "c"):
        c.put(D1, policy, info(), not_after=200.0, now=100.0)
    c.put(D2, "a", info(), not_after=200.0, now=100.0)
    c.forget(D1)  # every policy's entry for the token goes
    assert c.get(D1, "a", 150.0) is None
    assert c.get(D1, "b", 150.0) is None
    assert c.get(D1, "c", 150.0) is None
    assert c.get(D2, "a", 150.0) is not None


def test_verified_bounded_keeps_what_is_used() -> None:
    c = VerifiedCache(4, POLICIES)  # two generations of 2
    c.put(D1, "api", info("one"), not_after=200.0, now=100.0)
    c.put(D2, "api", info("two"), not_after=200.0, now=100.0)  # full: now the old half
    assert c.get(D1, "api", 101.0) is not None  # used: back in the young half
    d3 = token_digest("token-3")
    c.put(d3, "api", info("three"), not_after=200.0, now=100.0)
    assert len(c) == 2
    assert c.get(D2, "api", 101.0) is None  # the least recently used went with its half
    hit = c.get(D1, "api", 101.0)
    assert hit is not None
    assert hit.subject == "one"
    assert c.get(d3, "api", 101.0) is not None


@pytest.mark.parametrize("maxsize", [1, 2, 3, 4, 5, 10, 1000])
def test_generations_never_exceed_maxsize(maxsize: int) -> None:
    store = Generations(maxsize)
    for i in range(5 * maxsize + 3):
        store.put(i, i)
        assert len(store) <= maxsize
        assert store.get(i) == i  # the newest is always there
    assert len(store) >= maxsize // 2


def test_verified_entry_rebuilds_the_same_token_info() -> None:
    c = VerifiedCache(10, POLICIES)
    original = to_token_info(
        read_claims({"sub": "bob", "scope": "a b", "cnf": {"jkt": "x"}, "x": [1, {"y": 2}]}),
        source="jwt+introspection",
        issuer=ISS,
        token_type="at+jwt",
    )
    c.put(D1, "api", original, not_after=200.0, now=100.0)
    hit = c.get(D1, "api", 150.0)
    assert hit is not None
    assert hit.model_dump() == {**original.model_dump(), "cached": True}
    assert hit.claims == original.claims
    assert list(hit.claims) == list(original.claims)
    assert hit.scopes is original.scopes
