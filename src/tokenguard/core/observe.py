"""What a guard counts about its own work, and who listens. No I/O.

The engine and the shells report what happens here: each validation's end (policy,
result class, path taken, cached or not), cache lookups, key-set refreshes, requests to
authorization servers with their latency, single-flight joins, refusals for a full
introspection budget. :class:`Observer` keeps plain counters (read by
``TokenGuard.stats()``) and, when something listens (``tokenguard.otel``), tells a
:class:`Listener` too.

Cost: a token found in the verified-token cache costs one count
(a :class:`Tally` on the compiled policy), nothing else, whether or not anything
listens; everything else is counted on paths that already do far more work (a signature
check, an HTTP exchange). The counts a first-seen token makes (cache lookups, a
successful validation) take no lock: each is a :class:`Tally`. Listeners read the
counters when they are collected (OpenTelemetry's asynchronous instruments), so a cached
hit never calls one.

Nothing that identifies a token is ever a label: counters are keyed by configured names
(policy, issuer), fixed vocabularies (result, path, cache, request kind) and error class
names; a single-flight key (which holds a token digest) is reduced to its kind.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from ..errors import (
    InsufficientScope,
    InsufficientUserAuthentication,
    MissingToken,
    TokenGuardError,
    ValidationUnavailable,
)
from .exchange import HttpOutcome, HttpRequest, HttpResponse

__all__ = [
    "CACHES",
    "RESULTS",
    "Exchange",
    "Listener",
    "Observer",
    "Outcome",
    "Tally",
    "Trace",
    "error_type",
    "fetch_kind",
    "result_class",
]

#: The result classes of a validation (``tokenguard.result``): after ASP.NET Core's
#: authentication (success / failure / none) and authorization (success / failure)
#: results, with the refusals split by what an operator does about them.
RESULTS = ("success", "missing", "invalid", "forbidden", "unavailable", "error")
Result = Literal["success", "missing", "invalid", "forbidden", "unavailable", "error"]

#: The caches whose lookups are counted (``tokenguard.cache``).
CACHES = ("verified", "introspection", "jwks", "metadata", "fleet")

#: The kinds of single-flight keys and requests, by the first member of the key.
_KINDS = {
    "jwks": "jwks",
    "metadata": "metadata",
    "introspect": "introspection",
    "fleet": "fleet",
}


def result_class(error: TokenGuardError | None) -> Result:
    """The result class of a validation that ended with ``error`` (None: success)."""
    if error is None:
        return "success"
    if isinstance(error, MissingToken):
        return "missing"
    if isinstance(error, InsufficientScope | InsufficientUserAuthentication):
        return "forbidden"  # a good token that does not allow this request
    if isinstance(error, ValidationUnavailable):
        return "unavailable"
    if error.status_code >= 500:
        return "error"
    return "invalid"


def error_type(error: TokenGuardError) -> str:
    """OpenTelemetry's ``error.type`` for a refusal: the error's public class name
    (``tokenguard.ExpiredToken``), never its message."""
    return f"tokenguard.{type(error).__name__}"


def fetch_kind(key: Hashable) -> str:
    """The kind of a single-flight key or request (``jwks``, ``metadata``,
    ``introspection``, ``fleet``, ``other``): never the key itself (it may hold a
    token's digest)."""
    first = key[0] if isinstance(key, tuple) and key else None
    return _KINDS.get(first, "other") if isinstance(first, str) else "other"


class Tally:
    """A counter that stays exact without a lock: ``add`` is one call to ``next`` on
    an :func:`itertools.count`, a single C call the interpreter never interleaves with
    another thread's (``n += 1`` on an attribute can lose counts)."""

    __slots__ = ("_count", "add")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.add = self._count.__next__

    @property
    def value(self) -> int:
        # The count's repr is "count(N)": N is how many times add was called.
        return int(repr(self._count)[6:-1])


class Trace:
    """What one validation flow learnt about itself, filled in as it goes."""

    __slots__ = ("cached", "format", "path", "policy")

    def __init__(
        self, policy: str, format: str = "unknown", path: str = "none", cached: bool = False
    ) -> None:
        self.policy = policy
        self.format = format  # jws, jwe, opaque, malformed
        # jwt, introspection, jwt+introspection; cache: a verified-cache hit whose DPoP
        # proof is claimed across the fleet; none: refused before a path was chosen
        self.path = path
        self.cached = cached  # the answer came from a cache (verified, introspection, fleet)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one validation that needed work ended (what a listener is told)."""

    policy: str
    format: str
    path: str
    cached: bool
    result: Result
    error_type: str | None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to an authorization server, as a listener sees it: never a header,
    a body or a query string."""

    kind: str  # jwks, metadata, introspection
    issuer: str | None
    method: str
    url: str
    outcome: HttpOutcome | None  # None while it runs
    seconds: float

    @property
    def status(self) -> int | None:
        return self.outcome.status if isinstance(self.outcome, HttpResponse) else None

    @property
    def failed(self) -> bool:
        """No answer, or an answer other than 200."""
        return self.status != 200


class Listener(Protocol):
    """What :class:`Observer` tells beyond its counters (``tokenguard.otel``)."""

    def validation(self) -> AbstractContextManager[None]:
        """Around a validation that needs work (the validation span)."""

    def validated(self, outcome: Outcome) -> None:
        """At the end of that validation, inside :meth:`validation`."""

    def exchange(self, exchange: Exchange) -> AbstractContextManager[Callable[[Exchange], None]]:
        """Around one request (its span); the value is called with the finished one."""


def _issuer_of(key: Hashable) -> str | None:
    if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], str):
        return key[1]  # ("jwks", issuer), ("metadata", issuer, url), ("introspect", issuer, ...)
    return None


@dataclass
class RequestTally:
    """Requests of one kind to one issuer."""

    count: int = 0
    failures: int = 0
    seconds: float = 0.0
    max_seconds: float = 0.0


class Observer:
    """The counters of one guard, and its listener (None: nothing listens).

    Thread-safe: the :class:`Tally` counters (the cached hits and the first-seen path's
    counts) are exact without a lock; the others change under a short lock.
    """

    def __init__(self) -> None:
        self.listener: Listener | None = None
        # Told of each finished request (the gateway's upstream metrics), listener or not.
        self.on_exchange: Callable[[Exchange], None] | None = None
        self._lock = threading.Lock()
        # (policy, result, error type, path, cached) -> count, for validations that
        # needed work or were refused before (the cached hits are policy Tallies).
        self.validations: dict[tuple[str, str, str | None, str, bool], int] = {}
        # (policy, path, cached) -> successful validations that needed work: the
        # counts of the first-seen path, without the lock (added to validations on copy).
        self._successes: dict[tuple[str, str, bool], Tally] = {}
        self._lookups: dict[tuple[str, bool], Tally] = {}  # (cache, hit) -> count
        self.requests: dict[tuple[str, str], RequestTally] = {}  # (kind, issuer)
        self.jwks: dict[tuple[str, bool], int] = {}  # (issuer, refreshed ok) -> count
        self.joins: dict[str, int] = {}  # kind -> flows that joined another's flight
        self.refused: dict[str, int] = {}  # issuer -> introspections refused (budget full)
        self.overdue: dict[str, int] = {}  # kind -> joiners that gave up at the deadline

    # -- validations ----------------------------------------------------------------

    def finished(self, trace: Trace, error: TokenGuardError | None) -> None:
        """A validation flow ended (``error``: how it was refused)."""
        if error is None:
            if trace.path != "cache":  # a cached success is counted on the policy
                key = (trace.policy, trace.path, trace.cached)
                (self._successes.get(key) or self._tally(self._successes, key)).add()
            listener = self.listener
            if listener is not None:
                listener.validated(
                    Outcome(trace.policy, trace.format, trace.path, trace.cached, "success", None)
                )
            return
        result = result_class(error)
        kind = error_type(error)
        failed = (trace.policy, result, kind, trace.path, trace.cached)
        with self._lock:
            self.validations[failed] = self.validations.get(failed, 0) + 1
        listener = self.listener
        if listener is not None:
            listener.validated(
                Outcome(trace.policy, trace.format, trace.path, trace.cached, result, kind)
            )

    def _tally(self, tallies: dict[Any, Tally], key: Any) -> Tally:
        """The tally for ``key``, created (once, under the lock) if new."""
        with self._lock:
            return tallies.setdefault(key, Tally())

    def refused_early(self, policy: str, error: TokenGuardError, path: str) -> None:
        """A validation refused before any flow started (no token, too long, a cached
        token whose binding the request does not prove)."""
        key = (policy, result_class(error), error_type(error), path, path == "cache")
        with self._lock:
            self.validations[key] = self.validations.get(key, 0) + 1

    def lookup(self, cache: str, hit: bool) -> None:
        """A lookup in one of the caches of :data:`CACHES`."""
        key = (cache, hit)
        (self._lookups.get(key) or self._tally(self._lookups, key)).add()

    def lookup_counter(self, cache: str, hit: bool) -> Callable[[], object]:
        """What :meth:`lookup` does for one (cache, hit), as a call without arguments
        (for the first-seen path, which counts the same two lookups every time)."""
        key = (cache, hit)
        return (self._lookups.get(key) or self._tally(self._lookups, key)).add

    def jwks_refreshed(self, issuer: str, ok: bool) -> None:
        """A key-set fetch ended: a key set was read (ok), or the last one is kept."""
        key = (issuer, ok)
        with self._lock:
            self.jwks[key] = self.jwks.get(key, 0) + 1

    # -- the shells -----------------------------------------------------------------

    def joined(self, key: Hashable) -> None:
        """A flow waits for another flow's request (or sub-flow) instead of its own."""
        kind = fetch_kind(key)
        with self._lock:
            self.joins[kind] = self.joins.get(kind, 0) + 1

    def gave_up(self, key: Hashable, why: str) -> None:
        """A shell gave up on a need: its issuer's introspection budget stayed full
        (``busy``) or the flight it joined overran its deadline (``overdue``)."""
        if why == "busy":
            issuer = _issuer_of(key) or "?"
            with self._lock:
                self.refused[issuer] = self.refused.get(issuer, 0) + 1
        else:
            kind = fetch_kind(key)
            with self._lock:
                self.overdue[kind] = self.overdue.get(kind, 0) + 1

    @contextmanager
    def exchange(
        self, key: Hashable, request: HttpRequest
    ) -> Iterator[Callable[[HttpOutcome], None]]:
        """Around one HTTP exchange of a shell: times it, counts it by kind and issuer,
        and lets a listener wrap it (a client span). The value records the outcome."""
        kind = fetch_kind(key)
        issuer = _issuer_of(key)
        found: list[HttpOutcome] = []
        started = time.perf_counter()
        listener = self.listener
        if listener is None:
            yield found.append
            seconds = time.perf_counter() - started
            outcome = found[0] if found else None
        else:
            pending = Exchange(kind, issuer, request.method, request.url, None, 0.0)
            with listener.exchange(pending) as done:
                try:
                    yield found.append
                finally:
                    seconds = time.perf_counter() - started
                    outcome = found[0] if found else None
                    done(Exchange(kind, issuer, request.method, request.url, outcome, seconds))
        self._count(kind, issuer, outcome, seconds)
        watch = self.on_exchange
        if watch is not None:
            watch(Exchange(kind, issuer, request.method, request.url, outcome, seconds))

    def _count(
        self, kind: str, issuer: str | None, outcome: HttpOutcome | None, seconds: float
    ) -> None:
        ok = isinstance(outcome, HttpResponse) and outcome.status == 200
        with self._lock:
            tally = self.requests.get((kind, issuer or "?"))
            if tally is None:
                tally = self.requests[(kind, issuer or "?")] = RequestTally()
            tally.count += 1
            tally.failures += 0 if ok else 1
            tally.seconds += seconds
            tally.max_seconds = max(tally.max_seconds, seconds)

    # -- reading --------------------------------------------------------------------

    def copy(self) -> Counts:
        """A consistent copy of the counters (taken under the lock)."""
        with self._lock:
            validations = dict(self.validations)
            for (policy, path, cached), tally in self._successes.items():
                validations[(policy, "success", None, path, cached)] = tally.value
            return Counts(
                validations=validations,
                # A tally made ahead (lookup_counter) counts nothing until it is used.
                lookups={k: n for k, tally in self._lookups.items() if (n := tally.value)},
                requests={k: RequestTally(**vars(t)) for k, t in self.requests.items()},
                jwks=dict(self.jwks),
                joins=dict(self.joins),
                refused=dict(self.refused),
                overdue=dict(self.overdue),
            )


@dataclass(frozen=True)
class Counts:
    """A copy of an :class:`Observer`'s counters."""

    validations: Mapping[tuple[str, str, str | None, str, bool], int]
    lookups: Mapping[tuple[str, bool], int]
    requests: Mapping[tuple[str, str], RequestTally]
    jwks: Mapping[tuple[str, bool], int]
    joins: Mapping[str, int]
    refused: Mapping[str, int]
    overdue: Mapping[str, int]


def server_address(url: str) -> tuple[str, int | None]:
    """``server.address`` and ``server.port`` of a request URL."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.hostname or "", port
