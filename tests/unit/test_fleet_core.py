"""The pure pieces of revocation and the fleet: tables, ordering, sealing, entries, the
breaker, security events. No I/O."""

from __future__ import annotations

import logging
import time

import pytest

from tokenguard.core.claims import read_claims
from tokenguard.core.events import Cutoff, event_cutoffs, read_set
from tokenguard.core.introspection import IntrospectionRecord
from tokenguard.core.revocation import Revocation, Revocations, SeenEvents
from tokenguard.errors import SecurityEventError
from tokenguard.fleet.breaker import Breaker
from tokenguard.fleet.codec import (
    decode_record,
    decode_revocation,
    encode_record,
    encode_revocation,
)
from tokenguard.fleet.keys import FleetKeys

SECRET = b"s" * 32


def test_keys_names_and_sealing() -> None:
    keys = FleetKeys(SECRET, "p")
    name = keys.name(b"ia", b"token")
    assert name.startswith(b"p:ia:{")
    assert name.endswith(b"}")
    assert keys.name(b"lk", b"token").split(b":")[2] == name.split(b":")[2]  # one hash tag
    assert keys.name(b"ia", b"other") != name
    sealed = keys.seal(name, b"hello")
    assert keys.open(name, sealed, 1000) == b"hello"
    assert keys.seal(name, b"hello") != sealed  # random nonces
    assert keys.seal(name, b"x", deterministic=True) == keys.seal(name, b"x", deterministic=True)
    assert keys.seal(name, b"x", deterministic=True) != keys.seal(name, b"y", deterministic=True)
    for bad in (sealed[:-1], b"\x02" + sealed[1:], sealed[:20], "text", None, sealed + b"x"):
        assert keys.open(name, bad, 1000) is None
    assert keys.open(b"p:ia:{other}", sealed, 1000) is None
    assert keys.open(name, sealed, 10) is None  # over the bound
    assert FleetKeys(b"t" * 32, "p").open(name, sealed, 1000) is None
    with pytest.raises(ValueError, match="at least 32 bytes"):
        FleetKeys(b"short", "p")
    assert "s" * 8 not in repr(keys)


def test_record_codec() -> None:
    claims = read_claims({"active": True, "sub": "a", "exp": 2_000_000_000, "scope": "x y"})
    record = IntrospectionRecord(True, claims, 1234.5)
    again = decode_record(encode_record(record))
    assert again is not None
    assert again.claims is not None
    assert (again.active, again.fetched_at, again.claims.subject) == (True, 1234.5, "a")
    inactive = decode_record(encode_record(IntrospectionRecord(False, None, 1.0)))
    assert inactive is not None
    assert not inactive.active
    for bad in (
        b"not json",
        b"[]",
        b'{"a": true, "t": 1}',
        b'{"a": "yes", "t": 1, "c": {}}',
        b'{"a": true, "t": NaN, "c": {}}',
        b'{"a": true, "t": 1, "c": []}',
        b'{"a": true, "t": 1, "c": {"exp": "soon"}}',
        b'{"a": true, "t": 1, "c": {}, "x": 1}',
    ):
        assert decode_record(bad) is None, bad


def test_revocation_codec() -> None:
    revocation = Revocation("subject", b"alice", "https://as", 10.0, 20.0)
    assert decode_revocation(encode_revocation(revocation)) == revocation
    for bad in (
        b"{}",
        b'{"k": "user", "i": "YQ==", "s": null, "b": 1, "u": 2}',
        b'{"k": "token", "i": "", "s": null, "b": 1, "u": 2}',
        b'{"k": "token", "i": "!!", "s": null, "b": 1, "u": 2}',
        b'{"k": "token", "i": "YQ==", "s": 5, "b": 1, "u": 2}',
        b'{"k": "token", "i": "YQ==", "s": null, "b": true, "u": 2}',
        b"nope",
    ):
        assert decode_revocation(bad) is None, bad


def test_breaker_opens_probes_and_logs_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenguard.fleet")
    breaker = Breaker(threshold=2, cooldown=0.05)
    assert breaker.allow()
    breaker.failure("timeout")
    assert not breaker.is_open
    breaker.failure("timeout")
    breaker.failure("timeout")
    assert breaker.is_open
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()  # one probe...
    assert not breaker.allow()  # ...and only one
    breaker.success()
    assert breaker.allow()
    breaker.success()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unavailable (timeout)" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


def test_revocation_table() -> None:
    table = Revocations(max_entries=3)
    now = 1000.0
    assert not table.refuses(token_ids=(b"d1",), issuer=None, subject="a", client_id=None,
                             issued_at=None, now=now)  # fmt: skip
    assert table.add(Revocation("token", b"d1", None, 0.0, now + 10), now)
    assert not table.add(Revocation("token", b"d1", None, 0.0, now + 5), now)  # known
    assert not table.add(Revocation("token", b"d2", None, 0.0, now - 1), now)  # lapsed
    assert table.is_revoked((b"x", b"d1"), now)
    assert not table.is_revoked((b"d1",), now + 11)
    cut = Revocation("subject", b"alice", "iss", 500.0, now + 10)
    assert table.add(cut, now)
    assert not table.add(Revocation("subject", b"alice", "iss", 400.0, now + 5), now)
    assert table.add(Revocation("subject", b"alice", "iss", 600.0, now + 5), now)  # later cut

    def refused(**claims: object) -> bool:
        base: dict[str, object] = {"token_ids": (), "issuer": "iss", "subject": "alice",
                                   "client_id": None, "issued_at": 550.0, "now": now}  # fmt: skip
        return table.refuses(**{**base, **claims})  # type: ignore[arg-type]

    assert refused()  # merged cut-off at 600, kept until now + 10
    assert not refused(issued_at=650.0)
    assert refused(issued_at=None)  # cannot prove it is newer
    assert not refused(issuer="other")
    assert not refused(subject="bob")
    assert not refused(now=now + 11)
    table.add(Revocation("client", b"app", None, 700.0, now + 10), now)
    assert refused(subject=None, client_id="app", issuer="any")
    # Over max_entries: the token entries lapsing first go (cut-offs stay).
    table.add(Revocation("token", b"d3", None, 0.0, now + 100), now)
    table.add(Revocation("token", b"d4", None, 0.0, now + 200), now)
    assert len(table.entries(now)) <= 3
    assert table.is_revoked((b"d4",), now)
    table.prune(now + 1000)
    assert not table.active


def test_forget_order() -> None:
    table = Revocations(max_touched=2)
    began = table.mark()
    assert not table.touched_since(b"t", began)
    table.touch(b"t", 100.0)
    assert table.touched_since(b"t", began)
    assert not table.touched_since(b"t", table.mark())
    assert table.touched_after(b"t", 99.0)
    assert not table.touched_after(b"t", 101.0)
    era = table.era(b"t", high_assurance=False)
    table.touch(b"t", 101.0)
    assert table.era(b"t", high_assurance=False) != era
    # Evicted records: conservatively "forgotten since" for anything older.
    old = table.mark()
    table.touch(b"a", 102.0)
    table.touch(b"b", 103.0)
    table.touch(b"c", 104.0)
    assert table.touched_since(b"t", old)
    assert table.touched_after(b"t", 50.0)
    # High assurance: a sent request moves the era on.
    before = table.era(b"h", high_assurance=True)
    table.sent_high_assurance(b"h")
    assert table.era(b"h", high_assurance=True) != before
    for name in (b"x", b"y", b"z"):
        table.sent_high_assurance(name)
    assert table.era(b"h", high_assurance=True) != before  # evicted: a new floor


def test_seen_events() -> None:
    seen = SeenEvents(max_entries=2, keep=10)
    assert seen.add(("i", "1"), 0)
    assert not seen.add(("i", "1"), 5)
    assert seen.add(("i", "1"), 20)
    assert seen.add(("i", "2"), 20)
    assert seen.add(("i", "3"), 20)
    assert seen.add(("i", "1"), 21)  # evicted by the bound


def test_read_set_and_cutoffs() -> None:
    now = 1000.0
    claims = {"iss": "https://as", "aud": ["r"], "iat": 990, "jti": "j", "events": {"e": {}}}
    assert read_set(claims, issuer="https://as", audience="r", now=now, leeway=5)[0] == "j"
    for change, err in (
        ({"iss": "x"}, "invalid_issuer"),
        ({"aud": "other"}, "invalid_audience"),
        ({"aud": 5}, "invalid_audience"),
        ({"jti": ""}, "invalid_request"),
        ({"iat": True}, "invalid_request"),
        ({"iat": now + 60}, "invalid_request"),
        ({"events": []}, "invalid_request"),
        ({"events": {"e": 1}}, "invalid_request"),
        ({"exp": 5}, "invalid_request"),
    ):
        with pytest.raises(SecurityEventError) as raised:
            read_set({**claims, **change}, issuer="https://as", audience="r", now=now, leeway=5)
        assert raised.value.err == err
    session = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
    subject = {"format": "aliases", "identifiers": [
        {"format": "iss_sub", "iss": "https://as", "sub": "a"},
        {"format": "iss_sub", "iss": "https://unknown", "sub": "b"},
        {"format": "complex", "user": {"format": "opaque", "id": "c"}},
        {"format": "email", "email": "d@x"},
        {"format": "opaque", "id": 5},
    ]}  # fmt: skip
    found = event_cutoffs(
        {},
        {session: {"subject": subject, "event_timestamp": 995}, "other": {}},
        transmitter="https://as",
        issuers={"https://as"},
        iat=990.0,
        now=now,
    )
    # 995 in whole seconds covers that second: tokens with iat 995 are refused too.
    assert found == (Cutoff("a", "https://as", 996.0), Cutoff("c", "https://as", 996.0))
    later = event_cutoffs(
        {"sub_id": {"format": "opaque", "id": "e"}},
        {session: {"event_timestamp": 5000}},
        transmitter="https://elsewhere",
        issuers={"https://as"},
        iat=990.0,
        now=now,
    )
    assert later == (Cutoff("e", None, now),)  # never after now; any issuer
