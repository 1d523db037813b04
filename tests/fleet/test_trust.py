"""Nothing read back from Redis is trusted without authentication.

Entries are written straight into Redis under the names the fleet uses: forged,
swapped between tokens, truncated, sealed under another secret, oversized, of the wrong
Redis type. None is ever accepted: the guard asks the authorization server instead, and
counts what it ignored. Revocations on the channel and in the stored set likewise.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tokenguard import InactiveToken
from tokenguard.core.claims import read_claims
from tokenguard.core.introspection import IntrospectionRecord
from tokenguard.core.revocation import Revocation
from tokenguard.fleet.codec import encode_record, encode_revocation
from tokenguard.fleet.keys import FleetKeys
from tokenguard.testing import AuthServer

from .conftest import SECRET, fleet_guard

OTHER_SECRET = "another-fleet-secret-with-enough-bytes-0123"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def answer_name(keys: FleetKeys, issuer: str, token: str) -> bytes:
    digest = hashlib.sha256(token.encode()).digest()
    return keys.name(b"ia", issuer.encode() + b"\x00" + digest)


def active_record(subject: str) -> IntrospectionRecord:
    claims = {"active": True, "sub": subject, "scope": "orders:read", "exp": time.time() + 300}
    return IntrospectionRecord(True, read_claims(claims), time.time())


Tamper = Callable[[FleetKeys, bytes, bytes], bytes | list[bytes]]


def forged(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    return b"\x01" + b"\x00" * 12 + encode_record(active_record("mallory")) + b"\x00" * 16


def plain(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    return encode_record(active_record("mallory"))  # unsealed JSON


def swapped(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    return keys.seal(other, encode_record(active_record("mallory")))  # sealed for another


def truncated(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    return keys.seal(name, encode_record(active_record("mallory")))[:-1]


def flipped(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    blob = bytearray(keys.seal(name, encode_record(active_record("mallory"))))
    blob[20] ^= 1
    return bytes(blob)


def foreign(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    prefix = keys.prefix.decode()
    return FleetKeys(OTHER_SECRET.encode(), prefix).seal(
        name, encode_record(active_record("mallory"))
    )


def oversized(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    record = active_record("mallory")
    raw = {**record.claims.raw, "pad": "x" * 300_000} if record.claims else {}
    return keys.seal(name, encode_record(IntrospectionRecord(True, read_claims(raw), time.time())))


def garbage_document(keys: FleetKeys, name: bytes, other: bytes) -> bytes:
    return keys.seal(name, b'{"a": true, "t": "yesterday", "c": {}}')


@pytest.mark.parametrize(
    "tamper", [forged, plain, swapped, truncated, flipped, foreign, oversized, garbage_document]
)
def test_tampered_answer_is_never_accepted(
    auth_server: AuthServer, redis_url: str, prefix: str, client: redis.Redis, tamper: Tamper
) -> None:
    keys = FleetKeys(SECRET.encode(), prefix)
    token = auth_server.issue_opaque(scopes=["orders:read"], subject="alice")
    auth_server.revoke(token)  # the AS says inactive: only a forged entry could pass it
    name = answer_name(keys, auth_server.issuer, token)
    other = answer_name(keys, auth_server.issuer, "another token")
    client.set(name, tamper(keys, name, other), px=60_000)
    guard = fleet_guard(auth_server, redis_url, prefix)
    try:
        with pytest.raises(InactiveToken):
            guard.validate(token)
        assert auth_server.request_count("introspection") == 1
        assert guard.fleet is not None
        assert guard.fleet.counters.rejected == 1
    finally:
        guard.close()


def test_wrong_redis_type_is_a_miss(
    auth_server: AuthServer, redis_url: str, prefix: str, client: redis.Redis
) -> None:
    keys = FleetKeys(SECRET.encode(), prefix)
    token = auth_server.issue_opaque(scopes=["orders:read"])
    client.rpush(answer_name(keys, auth_server.issuer, token), b"x")
    guard = fleet_guard(auth_server, redis_url, prefix)
    try:
        assert guard.validate(token).subject == "user-1"
        assert auth_server.request_count("introspection") == 1
    finally:
        guard.close()


def test_revocations_need_the_secret_too(
    auth_server: AuthServer, redis_url: str, prefix: str, client: redis.Redis
) -> None:
    keys = FleetKeys(SECRET.encode(), prefix)
    foreign_keys = FleetKeys(OTHER_SECRET.encode(), prefix)
    channel, stored = keys.fixed(b"revocations"), keys.fixed(b"rv")
    token = auth_server.issue_jwt(subject="bob", issued_at=time.time() - 10)
    cut = Revocation("subject", b"bob", None, time.time(), time.time() + 600)
    # Stored before the guard starts: a foreign one and garbage, never applied.
    client.zadd(stored, {foreign_keys.seal(stored, encode_revocation(cut)): time.time() + 600})
    client.zadd(stored, {b"garbage": time.time() + 600})
    guard = fleet_guard(auth_server, redis_url, prefix)
    try:
        assert guard.validate(token).subject == "bob"
        assert guard.fleet is not None
        assert guard.fleet.counters.rejected == 2
        # Published while it runs: likewise ignored.
        client.publish(channel, foreign_keys.seal(stored, encode_revocation(cut)))
        client.publish(channel, keys.seal(b"elsewhere", encode_revocation(cut)))
        deadline = time.monotonic() + 5
        while guard.fleet.counters.rejected < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert guard.validate(token).subject == "bob"
        # The genuine article works.
        client.publish(channel, keys.seal(stored, encode_revocation(cut)))
        while guard.fleet.counters.revocations_received < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(InactiveToken):
            guard.validate(token)
    finally:
        guard.close()


def test_nothing_in_redis_names_a_token_or_a_claim(
    auth_server: AuthServer, redis_url: str, prefix: str, client: redis.Redis
) -> None:
    guard = fleet_guard(auth_server, redis_url, prefix)
    try:
        token = auth_server.issue_opaque(scopes=["orders:read"], subject="zelda-the-subject")
        guard.validate(token)
        guard.revoke_subject("zelda-the-subject")
        guard.revoke(token)
        dump = b""
        for key in client.scan_iter(match=f"{prefix}:*"):
            dump += key
            kind = client.type(key)
            if kind == b"string":
                dump += client.get(key) or b""
            elif kind == b"zset":
                dump += b"".join(client.zrange(key, 0, -1))
        assert dump
        digest = hashlib.sha256(token.encode()).digest()
        for secret in (token.encode(), b"zelda", b"orders:read", digest, digest.hex().encode()):
            assert secret not in dump
    finally:
        guard.close()
