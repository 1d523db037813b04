"""Revocations this process knows of, and the order of forgets against answers. No I/O.

Two things live here:

* **What is revoked**: single tokens (a JWT by its issuer and ``jti``, or by the digest
  of its signed content when it has no ``jti``; an opaque token by its digest) and
  cut-offs per subject or client (every token of that subject or client issued before
  the cut-off is refused; a token without ``iat`` cannot prove it is newer, so it is
  refused too). Each entry is kept until the tokens it names would have expired anyway.
* **Rule 3, a revocation is final from the moment it returns**: every ``forget`` or
  ``revoke`` of a token gets a number in one increasing sequence; an answer about that
  token obtained (requested) before that number is neither cached nor served. Flows take
  a number when they start and check it when they finish; introspection flights are
  keyed by the token's *era* (the number of its last forget) so a validation that starts
  after a forget never joins a request sent before it; under ``high_assurance`` the era
  also moves on each request sent, so such a validation is only ever answered by a
  request sent after it began.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "Revocation",
    "RevocationKind",
    "Revocations",
    "SeenEvents",
    "cutoff",
    "jti_revocation_id",
    "signed_content_id",
    "token_revocation_id",
]

log = logging.getLogger("tokenguard.revocation")

RevocationKind = Literal["token", "subject", "client"]
#: The longest subject or client identifier accepted in a cut-off.
MAX_NAME_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation.

    ``kind`` ``token``: ``ident`` names one token (see :func:`jwt_revocation_id`,
    :func:`token_revocation_id`). ``subject``/``client``: ``ident`` is the ``sub`` or
    ``client_id``, ``issuer`` limits it to one issuer (None: any), and tokens issued
    before ``before`` are refused. ``until``: when the entry may be dropped (wall clock).
    """

    kind: RevocationKind
    ident: bytes
    issuer: str | None
    before: float
    until: float


def jti_revocation_id(issuer: str, token_id: str) -> bytes:
    """A JWT by its issuer and ``jti``: every token the issuer minted under that id,
    whatever its encoding."""
    return b"j" + hashlib.sha256(f"{issuer}\x00{token_id}".encode()).digest()


def signed_content_id(signing_input: bytes) -> bytes:
    """A JWT by what was signed (header and payload). An ECDSA signature is malleable
    (every ES256 token has a second valid signature, so a second byte string), so a
    revocation keyed on the token's bytes alone can be bypassed; this one cannot."""
    return b"s" + hashlib.sha256(signing_input).digest()


def token_revocation_id(digest: bytes) -> bytes:
    """The identity of an opaque (or otherwise unparsed) token: its digest."""
    return b"d" + digest


def cutoff(
    kind: RevocationKind,
    name: object,
    issuer: object,
    before: object,
    now: float,
    issuers: Mapping[str, Any],
    until: Callable[[float], float],
) -> Revocation:
    """A subject or client cut-off from caller input, checked: ``name`` a non-empty
    string, ``issuer`` None or a configured issuer, ``before`` None (now), a POSIX time
    or an aware datetime, not in the future."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"the {kind} must be a non-empty string of at most 1024 characters")
    if issuer is not None and (not isinstance(issuer, str) or issuer not in issuers):
        raise ValueError("issuer must be None or one of the configured issuers")
    if before is None:
        cut = now
    elif isinstance(before, datetime):
        if before.tzinfo is None:
            raise ValueError("before must be an aware datetime (with a time zone)")
        cut = before.timestamp()
    elif isinstance(before, int | float) and not isinstance(before, bool):
        cut = float(before)
    else:
        raise ValueError("before must be None, a POSIX timestamp or an aware datetime")
    if not math.isfinite(cut) or cut > now:
        raise ValueError("before must not lie in the future")
    return Revocation(kind, name.encode(), issuer, cut, until(now))


class Revocations:
    """Thread-safe revocation tables and forget ordering for one guard."""

    def __init__(self, *, max_entries: int = 1_000_000, max_touched: int = 65_536) -> None:
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._tokens: dict[bytes, float] = {}  # ident -> until
        self._subjects: dict[tuple[str | None, str], Revocation] = {}
        self._clients: dict[tuple[str | None, str], Revocation] = {}
        self.active = False  # any entry at all: the hot path checks this first
        self._seq: Iterator[int] = itertools.count(1)
        # digest -> (seq, wall time) of its last forget/revoke, most recent last.
        self._touched: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._max_touched = max_touched
        self._floor = 0  # the newest seq evicted from _touched
        self._floor_wall = 0.0
        self._ha_sent: OrderedDict[bytes, int] = OrderedDict()
        self._ha_floor = 0
        self._cut_seq = 0  # the seq of the newest cut-off

    # -- ordering (rule 3) ----------------------------------------------------------

    def mark(self) -> int:
        """A number for "now" in the forget order (a flow's start, a request's sending)."""
        return next(self._seq)

    def touch(self, digest: bytes, wall: float) -> None:
        """Record a forget/revoke of the token with this digest, before its caches are
        dropped: answers requested before now must not be cached or served after it."""
        seq = next(self._seq)
        with self._lock:
            self._touched[digest] = (seq, wall)
            self._touched.move_to_end(digest)
            while len(self._touched) > self._max_touched:
                _, (old, old_wall) = self._touched.popitem(last=False)
                self._floor = max(self._floor, old)
                self._floor_wall = max(self._floor_wall, old_wall)

    def touched_since(self, digest: bytes, seq: int) -> bool:
        """Whether the token was forgotten or revoked after ``seq`` (conservatively yes
        when that record was evicted)."""
        entry = self._touched.get(digest)
        if entry is None:
            return seq < self._floor
        return entry[0] > seq

    def touched_after(self, digest: bytes, wall: float) -> bool:
        """Whether the token was forgotten or revoked after the wall-clock time ``wall``
        (for answers fetched by another process, which carry only a time)."""
        entry = self._touched.get(digest)
        if entry is None:
            return wall < self._floor_wall
        return entry[1] >= wall

    def cut_since(self, seq: int) -> bool:
        """Whether a subject or client cut-off was added after ``seq``."""
        return self._cut_seq > seq

    def era(self, digest: bytes, *, high_assurance: bool) -> tuple[int, int]:
        """The single-flight era of a validation starting now: flows of one era may
        share one introspection request."""
        entry = self._touched.get(digest)
        forgot = self._floor if entry is None else entry[0]
        if not high_assurance:
            return forgot, 0
        sent = self._ha_sent.get(digest)
        return forgot, self._ha_floor if sent is None else sent

    def sent_high_assurance(self, digest: bytes) -> int:
        """A high-assurance request for the token is being sent: validations starting
        from now on get a new era and do not join it. Returns the request's number."""
        seq = next(self._seq)
        with self._lock:
            self._ha_sent[digest] = seq
            self._ha_sent.move_to_end(digest)
            while len(self._ha_sent) > self._max_touched:
                self._ha_sent.popitem(last=False)
                self._ha_floor = seq  # new eras for every evicted token: never an old one
        return seq

    # -- what is revoked --------------------------------------------------------------

    def add_all(self, revocations: Iterable[Revocation], now: float) -> list[Revocation]:
        """Record revocations; returns those that were new."""
        return [r for r in revocations if self.add(r, now)]

    def add(self, revocation: Revocation, now: float) -> bool:
        """Record a revocation; returns False if it was already known (or has lapsed)."""
        if revocation.until <= now:
            return False
        with self._lock:
            if revocation.kind == "token":
                known = self._tokens.get(revocation.ident)
                if known is not None and known >= revocation.until:
                    return False
                self._tokens[revocation.ident] = revocation.until
            else:
                table = self._subjects if revocation.kind == "subject" else self._clients
                key = (revocation.issuer, revocation.ident.decode())
                known_cut = table.get(key)
                if (
                    known_cut is not None
                    and known_cut.before >= revocation.before
                    and known_cut.until >= revocation.until
                ):
                    return False
                if known_cut is not None:  # keep the later cut-off, the longer life
                    revocation = Revocation(
                        revocation.kind,
                        revocation.ident,
                        revocation.issuer,
                        max(revocation.before, known_cut.before),
                        max(revocation.until, known_cut.until),
                    )
                table[key] = revocation
                self._cut_seq = next(self._seq)
            self.active = True
            if self._size() > self._max_entries:
                self._prune(now, force=True)
        return True

    def is_revoked(self, token_ids: tuple[bytes, ...], now: float) -> bool:
        """Whether one of these token identities is revoked (no claims needed)."""
        tokens = self._tokens
        for ident in token_ids:
            until = tokens.get(ident)
            if until is not None and now < until:
                return True
        return False

    def refuses(
        self,
        *,
        token_ids: tuple[bytes, ...],
        issuer: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: float | None,
        now: float,
    ) -> bool:
        """Whether a token with these identities and claims is revoked at ``now``."""
        if not self.active:
            return False
        if self.is_revoked(token_ids, now):
            return True
        for table, name in ((self._subjects, subject), (self._clients, client_id)):
            if name is None or not table:
                continue
            for key in ((issuer, name), (None, name)):
                cut = table.get(key)
                if (
                    cut is not None
                    and now < cut.until
                    and (issued_at is None or issued_at < cut.before)
                ):
                    return True
        return False

    def entries(self, now: float) -> list[Revocation]:
        """Every revocation still in force (for tests and diagnostics)."""
        with self._lock:
            self._prune(now)
            found = [Revocation("token", i, None, 0.0, u) for i, u in self._tokens.items()]
            found.extend(self._subjects.values())
            found.extend(self._clients.values())
        return found

    def prune(self, now: float) -> None:
        """Drop lapsed entries."""
        with self._lock:
            self._prune(now)

    def _size(self) -> int:
        return len(self._tokens) + len(self._subjects) + len(self._clients)

    def _prune(self, now: float, *, force: bool = False) -> None:
        self._tokens = {i: u for i, u in self._tokens.items() if u > now}
        self._subjects = {k: r for k, r in self._subjects.items() if r.until > now}
        self._clients = {k: r for k, r in self._clients.items() if r.until > now}
        if force and self._size() > self._max_entries:
            # Still full: drop the token entries that lapse first. Cut-offs are few and
            # each covers many tokens, so they are kept.
            keep = sorted(self._tokens.items(), key=lambda item: item[1])
            excess = self._size() - self._max_entries
            self._tokens = dict(keep[excess:])
            log.error("revocation table full: %d token revocations dropped early", excess)
        self.active = bool(self._size())


class SeenEvents:
    """The security events already applied, by (issuer, ``jti``): a transmitter that
    delivers one again (a retry) is acknowledged without applying it twice. Bounded in
    count and kept a day."""

    def __init__(self, *, max_entries: int = 100_000, keep: float = 86400.0) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max = max_entries
        self._keep = keep

    def add(self, key: tuple[str, str], now: float) -> bool:
        """Record ``key``; False if it was seen within the last day."""
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen < self._keep:
                return False
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return True
