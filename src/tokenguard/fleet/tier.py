"""The steps a validation takes with the fleet, as sub-flows yielding store needs. No I/O.

Shared introspection answers
    A process that misses locally asks Redis (one round trip: the answer and the flight
    lock). An answer found is put in the local cache and then read back under the asking
    policy's bounds, exactly like a local entry. On a miss the process takes the flight
    lock (``SET NX`` with an expiry) and introspects; the others poll for the answer until
    the lock is released or expires, so a holder that dies blocks them at most
    ``lock_timeout``, then one of them takes over. The answer is written sealed, for as
    long as the local cache may keep it (token ``exp``, the longest policy TTL, the
    inactive TTL).

Revocations
    Written to a sorted set (scored by when they lapse, so lapsed ones are dropped) and
    published on a channel; every process adds what it receives to its revocation table.
    A process that (re)connects loads the whole set before it serves; a revocation this
    process could not write (Redis down) waits in an outbox, written on reconnect.

DPoP proofs
    A proof's ``jti`` is claimed fleet-wide with one ``SET NX`` on a name derived (HMAC
    under the fleet's name key) from the proof key's thumbprint and the ``jti``, kept
    while any process could still accept the proof. Only a request that passed every
    check gets here (the local replay cache claimed it first), so nothing an
    unauthenticated request sends is written. The value is one constant byte: nothing is
    ever read back.

Redis trouble never fails a validation: any failure is a :class:`StoreFailure`, counted
by the breaker; the flow carries on with the local caches and the authorization server.
The one exception is a DPoP proof whose fleet-wide replay check cannot be made: refused
(503) unless the fleet is configured to fall back on the local replay cache
(``dpop_replay_when_down``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..core.exchange import Fetch
from ..core.introspection import IntrospectionRecord
from ..core.needs import (
    Pause,
    Store,
    StoreAdd,
    StoreDelete,
    StoreFailure,
    StoreGet,
    StoreOp,
    StoreOutcome,
    StorePublish,
    StorePut,
    StoreRange,
)
from ..core.revocation import Revocation, Revocations
from .breaker import Breaker
from .codec import decode_record, decode_revocation, encode_record, encode_revocation
from .keys import FleetKeys

__all__ = ["FleetCounters", "FleetTier"]

log = logging.getLogger("tokenguard.fleet")

_ANSWER = b"ia"
_LOCK = b"lk"
_REVOCATIONS = b"rv"
_CHANNEL = b"revocations"
_PROOF = b"dp"
_PROOF_MARK = b"1"
_MAX_REVOCATION_BYTES = 4096
_FIRST_POLL = 0.004
_MAX_POLL = 0.05


@dataclass
class FleetCounters:
    """What the fleet tier saw (read them in tests, benchmarks and diagnostics)."""

    shared_hits: int = 0  # answers served from Redis
    shared_misses: int = 0
    flights_led: int = 0  # introspections this process made under the fleet lock
    flights_waited: int = 0  # times this process waited for another's flight
    rejected: int = 0  # entries that failed authentication, type or size checks
    failures: int = 0  # Redis calls that failed
    revocations_received: int = 0
    proofs_claimed: int = 0  # DPoP proof jtis written fleet-wide
    proofs_replayed: int = 0  # DPoP proofs another process had accepted
    proofs_unchecked: int = 0  # DPoP proofs Redis could not check (refused or local only)


class FleetTier:
    """The fleet's rules for one guard: names, sealing, flight lock, revocation sync."""

    def __init__(
        self,
        keys: FleetKeys,
        revocations: Revocations,
        *,
        forget_digest: Callable[[bytes], None],
        lock_timeout: float,
        max_wait: float,
        max_entry_bytes: int,
        breaker: Breaker | None = None,
        max_outbox: int = 100_000,
        dpop_replay_when_down: Literal["refuse", "local"] = "refuse",
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self.dpop_replay_when_down = dpop_replay_when_down
        note = "; DPoP proofs are refused (503)" if dpop_replay_when_down == "refuse" else ""
        self.breaker = breaker or Breaker(outage_note=note)
        self.counters = FleetCounters()
        self._forget_digest = forget_digest
        self._lock_timeout = lock_timeout
        self._max_wait = max_wait
        self._max_entry_bytes = max_entry_bytes
        self._set = keys.fixed(_REVOCATIONS)
        self.channel = keys.fixed(_CHANNEL)
        self._outbox: list[Revocation] = []
        self._outbox_lock = threading.Lock()
        self._max_outbox = max_outbox

    # -- store outcomes ---------------------------------------------------------------

    def _ok(self, outcome: StoreOutcome) -> tuple[Any, ...] | None:
        """The results, or None after recording the failure with the breaker."""
        if isinstance(outcome, StoreFailure):
            self.counters.failures += 1
            self.breaker.failure(outcome.reason)
            return None
        self.breaker.success()
        return outcome

    # -- shared introspection answers ---------------------------------------------------

    def introspect(
        self,
        issuer: str,
        digest: bytes,
        fetch: Fetch,
        accept: Callable[[IntrospectionRecord], IntrospectionRecord | None],
        keep_for: Callable[[IntrospectionRecord], float],
    ) -> Generator[Any, Any, Any]:
        """What ``fetch`` would return, from Redis when another process already has it,
        and whether it came from Redis.

        ``accept`` takes a record read from Redis into the local cache and returns it if
        the asking policy may use it; ``keep_for`` says how long an answer may be shared.
        """
        if not self.breaker.allow():
            return (yield fetch), False
        ident = issuer.encode() + b"\x00" + digest
        answer, lock = self.keys.name(_ANSWER, ident), self.keys.name(_LOCK, ident)
        probe = Store((StoreGet((answer, lock)),), complete=self._ok)
        results = yield probe
        leading = False
        waited = False
        # The lock expires after lock_timeout, so a holder that died is replaced by one
        # waiter then; a waiter gives up waiting (and asks the AS) only past this valve.
        deadline = time.monotonic() + self._max_wait
        delay = _FIRST_POLL
        owner = secrets.token_bytes(16)
        while results is not None:
            values = results[0]
            if isinstance(values, StoreFailure):
                break
            record = self._read_answer(answer, values[0])
            if record is not None and (usable := accept(record)) is not None:
                self.counters.shared_hits += 1
                return usable, True
            if values[1] is None:
                # Nobody holds the flight (its holder finished without an answer to
                # share, or died and its lock expired): take it; one process wins.
                taken = yield Store(
                    (StorePut(lock, owner, self._lock_timeout, only_if_absent=True),),
                    complete=self._ok,
                )
                if taken is None or isinstance(taken[0], StoreFailure):
                    break
                if taken[0] is True:
                    leading = True
                    break
            if time.monotonic() >= deadline:
                break
            if not waited:
                waited = True
                self.counters.flights_waited += 1
            yield Pause(delay)
            delay = min(delay * 2, _MAX_POLL)
            results = yield probe
        self.counters.shared_misses += 1
        if leading:
            self.counters.flights_led += 1
        result = yield fetch
        if leading or isinstance(result, IntrospectionRecord):
            ops: list[StoreOp] = []
            if isinstance(result, IntrospectionRecord) and (ttl := keep_for(result)) > 0:
                ops.append(StorePut(answer, self.keys.seal(answer, encode_record(result)), ttl))
            if leading:
                ops.append(StoreDelete((lock,)))
            if ops and self.breaker.allow():
                yield Store(tuple(ops), complete=self._ok)
        return result, False

    def _read_answer(self, name: bytes, blob: object) -> IntrospectionRecord | None:
        if blob is None:
            return None
        plain = self.keys.open(name, blob, self._max_entry_bytes)
        record = decode_record(plain) if plain is not None else None
        if record is None:
            self.counters.rejected += 1
            log.warning("ignored a fleet cache entry that failed authentication or checks")
        return record

    def forget_shared(self, digest: bytes, issuers: Iterable[str]) -> tuple[StoreOp, ...]:
        """Operations that drop the shared answers about a token."""
        names = tuple(self.keys.name(_ANSWER, i.encode() + b"\x00" + digest) for i in issuers)
        return (StoreDelete(names),)

    # -- DPoP proofs ------------------------------------------------------------------

    def claim_proof(self, identity: bytes, ttl: float) -> Generator[Any, Any, bool | None]:
        """Claim a DPoP proof's identity (key thumbprint and ``jti``) for the whole
        fleet for ``ttl`` seconds: True if no process had, False if one had (a replay),
        None if Redis could not answer (down, timed out, breaker open)."""
        if not self.breaker.allow():
            self.counters.proofs_unchecked += 1
            return None
        name = self.keys.name(_PROOF, identity)
        put = StorePut(name, _PROOF_MARK, ttl, only_if_absent=True)
        results = yield Store((put,), complete=self._ok)
        if results is None or isinstance(results[0], StoreFailure):
            if results is not None:  # one command failed, not the round trip
                self.counters.failures += 1
                self.breaker.failure(results[0].reason)
            self.counters.proofs_unchecked += 1
            return None
        if results[0] is True:
            self.counters.proofs_claimed += 1
            return True
        self.counters.proofs_replayed += 1
        return False

    # -- revocations ----------------------------------------------------------------

    def publish(
        self, revocations: list[Revocation], also: tuple[StoreOp, ...] = ()
    ) -> Generator[Any, Any, None]:
        """Store and announce revocations (and run ``also`` in the same round trip).
        Kept in the outbox when Redis cannot take them now."""
        if not revocations and not also:
            return
        now = time.time()
        ops = [*also, *self._revocation_ops(revocations, now)]
        if not self.breaker.allow():
            self._hold(revocations)
            return
        results = yield Store(tuple(ops), complete=self._ok)
        if results is None or any(isinstance(r, StoreFailure) for r in results):
            self._hold(revocations)

    def _revocation_ops(self, revocations: Iterable[Revocation], now: float) -> list[StoreOp]:
        ops: list[StoreOp] = []
        for revocation in revocations:
            blob = self.keys.seal(self._set, encode_revocation(revocation), deterministic=True)
            keep = max(revocation.until - now, 1.0)
            ops.append(StoreAdd(self._set, blob, revocation.until, now, keep))
            ops.append(StorePublish(self.channel, blob))
        return ops

    def _hold(self, revocations: list[Revocation]) -> None:
        if not revocations:
            return
        with self._outbox_lock:
            self._outbox.extend(revocations)
            excess = len(self._outbox) - self._max_outbox
            if excess > 0:
                del self._outbox[:excess]
                log.error("fleet outbox full: %d revocations will not reach Redis", excess)
        log.warning("revocation kept locally: Redis unavailable; it reaches the fleet on reconnect")

    @property
    def pending(self) -> int:
        """How many revocations wait in the outbox."""
        return len(self._outbox)

    def outbox_ops(self, now: float) -> tuple[list[Revocation], list[StoreOp]]:
        """The revocations waiting for Redis and the operations that write them."""
        with self._outbox_lock:
            waiting = [r for r in self._outbox if r.until > now]
        return waiting, self._revocation_ops(waiting, now)

    def outbox_sent(self, sent: list[Revocation]) -> None:
        with self._outbox_lock:
            done = set(map(id, sent))
            self._outbox = [r for r in self._outbox if id(r) not in done]

    def catch_up_op(self, now: float, limit: int) -> StoreRange:
        """The read that loads every revocation still in force."""
        return StoreRange(self._set, now, limit)

    def reseed_ops(self, now: float) -> list[StoreOp]:
        """Operations that write every revocation this process knows back to Redis (after
        Redis lost its data, e.g. a restart without persistence); idempotent."""
        known = self.revocations.entries(now)
        return [op for op in self._revocation_ops(known, now) if type(op) is StoreAdd]

    def receive(self, blob: object, now: float) -> bool:
        """A revocation from the channel or the stored set; returns whether it was new."""
        plain = self.keys.open(self._set, blob, _MAX_REVOCATION_BYTES)
        revocation = decode_revocation(plain) if plain is not None else None
        if revocation is None:
            self.counters.rejected += 1
            log.warning("ignored a fleet revocation that failed authentication or checks")
            return False
        if not self.revocations.add(revocation, now):
            return False
        self.counters.revocations_received += 1
        if revocation.kind == "token" and revocation.ident[:1] == b"d":
            self._forget_digest(revocation.ident[1:])  # drop what this process cached
        return True
