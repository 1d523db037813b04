"""OpenTelemetry traces and metrics for a guard, through ``opentelemetry-api`` only.

``tokenguard[otel]`` installs the API; the application brings the SDK, its exporters
and its providers. :func:`instrument` (or :meth:`tokenguard.TokenGuard.instrument`)
uses the providers passed to it, or else the application's global ones (a no-op until
the application installs an SDK, picked up when it does)::

    from tokenguard.otel import instrument

    instrument(guard)  # the global tracer and meter providers
    instrument(guard, tracer_provider=tp, meter_provider=mp)  # or these

Spans: ``tokenguard.validate`` for each validation that needed work (a token found in
the verified-token cache makes none), with a ``CLIENT`` child span per request to an
authorization server (key set, metadata, introspection) named after its HTTP method.
Metrics: the counters of :meth:`tokenguard.TokenGuard.stats`, read when the metrics are
collected (asynchronous instruments: counting costs the validations nothing more), and
two histograms recorded as things happen (validation and introspection durations).
Every name, attribute and value is listed in ``docs/observability.md``. No span or
metric ever holds a token, a digest of one or a claim value.
"""

from __future__ import annotations

import contextvars
import operator
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "tokenguard.otel needs opentelemetry-api: pip install 'tokenguard[otel]'",
        name=missing.name,
    ) from missing

from . import __version__
from .core.exchange import HttpFailure
from .core.observe import Exchange, Outcome, server_address

if TYPE_CHECKING:
    from .guard import TokenGuard
    from .stats import GuardStats

__all__ = ["SCOPE", "Instrumentation", "instrument"]

#: The instrumentation scope (tracer and meter name).
SCOPE = "tokenguard"

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: ``error.type`` of a request that got no answer, by the shells' log-safe reasons;
#: any other reason is ``_OTHER`` (OpenTelemetry's value for an unknown error).
_FAILURES = {
    "timeout": "timeout",
    "connection failed": "connection_failed",
    "connection lost": "connection_lost",
    "protocol error": "protocol_error",
    "TLS failure": "tls_failure",
    "bad URL": "bad_url",
    "response too large": "response_too_large",
    "response too slow": "response_too_slow",
    "bad compressed body": "bad_compressed_body",
    "unsupported content encoding": "unsupported_content_encoding",
    "unexpected interim response": "unexpected_interim_response",
}

#: ``tokenguard.result`` values a span is marked as failed for: the guard could not
#: decide. A refused token is a decision, like a 4xx for an HTTP server span.
_FAILED = frozenset({"unavailable", "error"})


class Instrumentation:
    """One guard reporting to OpenTelemetry (made by :func:`instrument`)."""

    def __init__(
        self,
        guard: TokenGuard,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self._guard = guard
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._instruments = _Instruments.for_provider(meter_provider)
        self._instruments.add(self)
        self._current: contextvars.ContextVar[_Validation | None] = contextvars.ContextVar(
            "tokenguard_validation", default=None
        )
        self.active = True
        guard._engine.observer.listener = self

    def uninstrument(self) -> None:
        """Stop reporting: no more spans, and the metrics no longer include this guard."""
        self.active = False
        observer = self._guard._engine.observer
        if observer.listener is self:
            observer.listener = None
        self._instruments.remove(self)

    def _snapshot(self) -> GuardStats:
        return self._guard.stats()

    # -- the listener of core/observe.py ----------------------------------------------

    def validation(self) -> AbstractContextManager[None]:
        """The span of one validation that needs work, current while it runs."""
        return _Validation(self)

    def validated(self, outcome: Outcome) -> None:
        """The end of the current validation: its attributes on its span."""
        state = self._current.get()
        if state is None or state.outcome is not None:
            return  # not a validation this instrumentation opened a span for
        state.outcome = outcome
        span = state.span
        if span is not None and span.is_recording():
            span.set_attributes(_span_attributes(outcome))
            if outcome.result in _FAILED:
                span.set_status(Status(StatusCode.ERROR))

    def exchange(self, exchange: Exchange) -> AbstractContextManager[Callable[[Exchange], None]]:
        """The client span of one request to an authorization server; the value takes
        the finished request (its status or failure, and for an introspection its
        duration, recorded in ``tokenguard.introspection.duration``)."""
        return self._exchange(exchange)

    @contextmanager
    def _exchange(self, pending: Exchange) -> Iterator[Callable[[Exchange], None]]:
        address, port = server_address(pending.url)
        attributes: dict[str, Any] = {
            "http.request.method": pending.method,
            "server.address": address,
            "url.full": _safe_url(pending.url),
            "tokenguard.request.kind": pending.kind,
        }
        if port is not None:
            attributes["server.port"] = port
        if pending.issuer is not None:
            attributes["tokenguard.issuer"] = pending.issuer
        with self._tracer.start_as_current_span(
            pending.method,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
        ) as span:

            def done(finished: Exchange) -> None:
                status = finished.status
                error = _request_error(finished)
                if span.is_recording():
                    if status is not None:
                        span.set_attribute("http.response.status_code", status)
                    if error is not None:
                        span.set_attribute("error.type", error)
                        span.set_status(Status(StatusCode.ERROR))
                if finished.kind == "introspection":
                    measured: dict[str, Any] = {"server.address": address}
                    if finished.issuer is not None:
                        measured["tokenguard.issuer"] = finished.issuer
                    if status is not None:
                        measured["http.response.status_code"] = status
                    if error is not None:
                        measured["error.type"] = error
                    self._instruments.introspection_duration.record(finished.seconds, measured)

            yield done


class _Validation:
    """Around one validation: its span (current while the validation runs, so that the
    requests it makes are its children) and its duration. A class, not a generator:
    this runs once per validation that needs work, with or without an SDK."""

    __slots__ = ("_attached", "_instrumentation", "_mine", "outcome", "span", "started")

    def __init__(self, instrumentation: Instrumentation) -> None:
        self._instrumentation = instrumentation
        self.span: Span | None = None
        self.outcome: Outcome | None = None
        self.started = 0.0
        self._attached: contextvars.Token[Context] | None = None
        self._mine: contextvars.Token[_Validation | None] | None = None

    def __enter__(self) -> None:
        owner = self._instrumentation
        self.started = time.perf_counter()
        span = owner._tracer.start_span("tokenguard.validate", record_exception=False)
        if span.get_span_context().is_valid:
            # Made current even when not recorded (sampled out): its requests' spans
            # then follow the same sampling decision.
            self.span = span
            self._attached = context.attach(trace.set_span_in_context(span))
        # else a no-op tracer (no SDK): nothing to record, nothing to make current
        self._mine = owner._current.set(self)

    def __exit__(self, *exc_info: object) -> None:
        owner = self._instrumentation
        if self._mine is not None:
            owner._current.reset(self._mine)
        if self._attached is not None:
            context.detach(self._attached)
        if self.span is not None:
            self.span.end()
        outcome = self.outcome
        histogram = owner._instruments.validation_duration
        if outcome is not None and not isinstance(histogram, metrics.NoOpHistogram):
            histogram.record(time.perf_counter() - self.started, _duration_attributes(outcome))


def _span_attributes(outcome: Outcome) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "tokenguard.policy": outcome.policy,
        "tokenguard.token.format": outcome.format,
        "tokenguard.path": outcome.path,
        "tokenguard.result": outcome.result,
        "tokenguard.cached": outcome.cached,
    }
    if outcome.error_type is not None:
        attributes["error.type"] = outcome.error_type
    return attributes


def _duration_attributes(outcome: Outcome) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "tokenguard.policy": outcome.policy,
        "tokenguard.path": outcome.path,
        "tokenguard.result": outcome.result,
    }
    if outcome.error_type is not None:
        attributes["error.type"] = outcome.error_type
    return attributes


def _request_error(exchange: Exchange) -> str | None:
    """``error.type`` of a request: its status code from 400 up (OpenTelemetry's HTTP
    conventions), a fixed name for no answer, None otherwise."""
    outcome = exchange.outcome
    if isinstance(outcome, HttpFailure):
        return _FAILURES.get(outcome.reason, "_OTHER")
    if outcome is None:
        return "_OTHER"
    status = exchange.status
    return str(status) if status is not None and status >= 400 else None


def _safe_url(url: str) -> str:
    """``url.full`` without credentials: no user info, query values ``REDACTED``
    (OpenTelemetry's HTTP conventions); a configured URL, never a token's."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    query = "&".join(
        f"{pair.partition('=')[0]}=REDACTED" for pair in parts.query.split("&") if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _Instruments:
    """The metric instruments of one meter provider, shared by every guard instrumented
    on it (an SDK keeps the first registration of a name, so each is made once)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _global: ClassVar[_Instruments | None] = None
    _by_provider: ClassVar[weakref.WeakKeyDictionary[MeterProvider, _Instruments]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def for_provider(cls, provider: MeterProvider | None) -> _Instruments:
        with cls._lock:
            if provider is None:
                if cls._global is None:
                    cls._global = cls(None)
                return cls._global
            found = cls._by_provider.get(provider)
            if found is None:
                found = cls._by_provider[provider] = cls(provider)
            return found

    def __init__(self, provider: MeterProvider | None) -> None:
        self._members: weakref.WeakSet[Instrumentation] = weakref.WeakSet()
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=provider)
        self.validation_duration = meter.create_histogram(
            "tokenguard.validation.duration",
            unit="s",
            description="Duration of validations that needed work (not verified-cache hits).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.introspection_duration = meter.create_histogram(
            "tokenguard.introspection.duration",
            unit="s",
            description="Duration of token introspection requests (RFC 7662).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        counters: list[tuple[str, str, str, Callable[[GuardStats], Iterable[Observation]]]] = [
            (
                "tokenguard.validations",
                "{validation}",
                "Validations by policy, result class, path and whether a cache answered.",
                _validations,
            ),
            (
                "tokenguard.cache.lookups",
                "{lookup}",
                "Cache lookups by cache and hit or miss.",
                _lookups,
            ),
            (
                "tokenguard.jwks.refreshes",
                "{refresh}",
                "Key-set fetches by issuer and result (failure: the last keys are kept).",
                _refreshes,
            ),
            (
                "tokenguard.keys.stale_used",
                "{validation}",
                "Validations that used last-known-good keys past their freshness.",
                _stale,
            ),
            (
                "tokenguard.introspection.refused",
                "{validation}",
                "Validations refused because the issuer's introspection budget was full.",
                _refused,
            ),
            (
                "tokenguard.flight.joins",
                "{validation}",
                "Validations that waited for a request another validation had started.",
                _joins,
            ),
            (
                "tokenguard.flight.timeouts",
                "{validation}",
                "Of those, the ones that gave up at the request's deadline.",
                _timeouts,
            ),
            (
                "tokenguard.fleet.errors",
                "{error}",
                "Fleet (Redis) calls that failed; validation went on without Redis.",
                _fleet_errors,
            ),
            (
                "tokenguard.fleet.circuit.trips",
                "{trip}",
                "Times the fleet's circuit breaker opened.",
                _fleet_trips,
            ),
        ]
        for name, unit, description, read in counters:
            meter.create_observable_counter(
                name, callbacks=[self._callback(read)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "tokenguard.fleet.circuit",
            callbacks=[self._callback(_fleet_circuit, max)],
            unit="1",
            description="The fleet's circuit breaker: 1 open (Redis skipped), 0 closed.",
        )

    def add(self, member: Instrumentation) -> None:
        with self._lock:
            self._members.add(member)

    def remove(self, member: Instrumentation) -> None:
        with self._lock:
            self._members.discard(member)

    def _callback(
        self,
        read: Callable[[GuardStats], Iterable[Observation]],
        combine: Callable[[float, float], float] = operator.add,
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                members = [m for m in self._members if m.active]
            # Several guards on one provider: one observation per attribute set, the
            # counters summed, the circuit gauge the highest (open if any is open).
            totals: dict[frozenset[tuple[str, Any]], float] = {}
            for member in members:
                for observation in read(member._snapshot()):
                    key = frozenset((observation.attributes or {}).items())
                    found = totals.get(key)
                    value = observation.value
                    totals[key] = value if found is None else combine(found, value)
            return [Observation(value, dict(key)) for key, value in totals.items()]

        return callback


# -- reading a snapshot into observations ----------------------------------------------


def _validations(stats: GuardStats) -> Iterator[Observation]:
    for v in stats.validations:
        attributes: dict[str, Any] = {
            "tokenguard.policy": v.policy,
            "tokenguard.result": v.result,
            "tokenguard.path": v.path,
            "tokenguard.cached": v.cached,
        }
        if v.error_type is not None:
            attributes["error.type"] = v.error_type
        yield Observation(v.count, attributes)


def _lookups(stats: GuardStats) -> Iterator[Observation]:
    caches = stats.caches
    for name in ("verified", "introspection", "jwks", "metadata", "fleet"):
        if name == "fleet" and stats.fleet is None:
            continue
        cache = getattr(caches, name)
        yield Observation(cache.hits, {"tokenguard.cache": name, "tokenguard.cache.result": "hit"})
        yield Observation(
            cache.misses, {"tokenguard.cache": name, "tokenguard.cache.result": "miss"}
        )


def _refreshes(stats: GuardStats) -> Iterator[Observation]:
    for issuer in stats.issuers:
        where = {"tokenguard.issuer": issuer.issuer}
        yield Observation(issuer.jwks_refreshes, {**where, "tokenguard.jwks.result": "success"})
        yield Observation(
            issuer.jwks_refresh_failures, {**where, "tokenguard.jwks.result": "failure"}
        )


def _stale(stats: GuardStats) -> Iterator[Observation]:
    for issuer in stats.issuers:
        yield Observation(issuer.stale_keys_used, {"tokenguard.issuer": issuer.issuer})


def _refused(stats: GuardStats) -> Iterator[Observation]:
    for issuer in stats.issuers:
        yield Observation(issuer.introspections_refused, {"tokenguard.issuer": issuer.issuer})


def _joins(stats: GuardStats) -> Iterator[Observation]:
    for kind, count in stats.flight_joins.items():
        yield Observation(count, {"tokenguard.flight.kind": kind})


def _timeouts(stats: GuardStats) -> Iterator[Observation]:
    for kind, count in stats.flight_timeouts.items():
        yield Observation(count, {"tokenguard.flight.kind": kind})


def _fleet_errors(stats: GuardStats) -> Iterator[Observation]:
    if stats.fleet is not None:
        yield Observation(stats.fleet.errors)


def _fleet_trips(stats: GuardStats) -> Iterator[Observation]:
    if stats.fleet is not None:
        yield Observation(stats.fleet.circuit_trips)


def _fleet_circuit(stats: GuardStats) -> Iterator[Observation]:
    if stats.fleet is not None:
        yield Observation(1 if stats.fleet.circuit_open else 0)


def instrument(
    guard: TokenGuard,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Instrumentation:
    """Make ``guard`` report to OpenTelemetry: spans through ``tracer_provider`` and
    metrics through ``meter_provider``, each defaulting to the application's global
    provider (a no-op until an SDK is configured; picked up when it is). Instrumenting
    a guard again replaces its previous instrumentation.

    Returns the :class:`Instrumentation`; ``uninstrument()`` stops it.
    """
    listener = guard._engine.observer.listener
    if isinstance(listener, Instrumentation):
        listener.uninstrument()
    return Instrumentation(guard, tracer_provider=tracer_provider, meter_provider=meter_provider)
