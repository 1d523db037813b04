"""Prometheus metrics of the gateway, the guard's own counters (``guard.stats()``) as
Prometheus metrics, and the timing of the requests the guard makes to authorization
servers (:class:`UpstreamWatch`).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``tokenguard
gateway`` before the workers start) makes every worker write its samples there and
``/metrics`` add them up, whichever worker answers the scrape. The guard's counters
reach those files as increments (:class:`GuardCounters`): each worker adds what it
counted since it last did, when it answers a scrape and at most once a second while it
makes decisions, so the sum over workers is at most a second behind.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from ..core.exchange import HttpResponse
from ..core.observe import Exchange, server_address

if TYPE_CHECKING:
    from ..stats import GuardStats

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "GuardCounters", "UpstreamWatch"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_DECISION_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The gateway's metrics, in their own registry (several apps may share a process);
    what the guard counts itself is in :attr:`guard` (:class:`GuardCounters`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.decisions = Counter(
            "tokenguard_gateway_decisions",
            "Forward-auth decisions by route, result (allow, deny) and status.",
            ("route", "result", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tokenguard_gateway_decision_seconds",
            "Time from receiving a forward-auth request to answering it.",
            ("result",),
            buckets=_DECISION_BUCKETS,
            registry=self.registry,
        )
        self.token_cache = Counter(
            "tokenguard_gateway_token_answers",
            "Validated tokens by whether the answer came from a cache (hit) or not (miss).",
            ("cache",),
            registry=self.registry,
        )
        self.upstream = Histogram(
            "tokenguard_gateway_upstream_seconds",
            "Requests to authorization servers (metadata, JWKS, introspection), whole.",
            ("host", "outcome"),
            buckets=_UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "tokenguard_gateway_upstream_errors",
            "Requests to authorization servers that failed (transport error or 5xx).",
            ("host", "reason"),
            registry=self.registry,
        )

        self._decision_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.guard = GuardCounters(self.registry)

    def decision(self, route: str, result: str, status: int, seconds: float) -> None:
        """Count one decision and observe its latency."""
        key = (route, result, status)
        children = self._decision_children.get(key)
        if children is None:  # labels() takes a lock and builds tuples: do it once
            children = (
                self.decisions.labels(route, result, str(status)),
                self.latency.labels(result),
            )
            self._decision_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def expose(self) -> bytes:
        """The text exposition: of every worker in multiprocess mode, else of this one."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class UpstreamWatch:
    """Times each request the guard makes to an authorization server and counts the
    failures, whatever HTTP client the guard uses (it is told of each finished request
    by the guard's observer). Only the host is recorded, never a URL, header or body."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def __call__(self, exchange: Exchange) -> None:
        host, _ = server_address(exchange.url)
        outcome = exchange.outcome
        if isinstance(outcome, HttpResponse):
            label = f"{outcome.status // 100}xx"
            reason = f"http_{outcome.status}" if outcome.status >= 500 else None
        else:
            label = "error"
            reason = outcome.reason if outcome is not None else "cancelled"
        self._metrics.upstream.labels(host, label).observe(exchange.seconds)
        if reason is not None:
            self._metrics.upstream_errors.labels(host, reason).inc()


#: The guard's counters (``guard.stats()``) in Prometheus: name, help, labels, and how
#: to read ``(labels, value)`` pairs from a snapshot. The names are the OpenTelemetry
#: metrics' of docs/observability.md, in Prometheus' spelling.
_COUNTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "tokenguard_validations",
        "Validations by policy, result class, error type, path and whether a cache answered.",
        ("policy", "result", "error_type", "path", "cached"),
    ),
    ("tokenguard_cache_lookups", "Cache lookups by cache and hit or miss.", ("cache", "result")),
    (
        "tokenguard_jwks_refreshes",
        "Key-set fetches by issuer and result (failure: the last keys are kept).",
        ("issuer", "result"),
    ),
    (
        "tokenguard_keys_stale_used",
        "Validations that used last-known-good keys past their freshness.",
        ("issuer",),
    ),
    ("tokenguard_introspections", "Introspection requests by issuer.", ("issuer",)),
    (
        "tokenguard_introspection_failures",
        "Introspection requests without a 200 answer, by issuer.",
        ("issuer",),
    ),
    (
        "tokenguard_introspection_seconds",
        "Total duration of introspection requests, by issuer (divide by the requests).",
        ("issuer",),
    ),
    (
        "tokenguard_introspection_refused",
        "Validations refused because the issuer's introspection budget was full.",
        ("issuer",),
    ),
    (
        "tokenguard_flight_joins",
        "Validations that waited for a request another validation had started.",
        ("kind",),
    ),
    (
        "tokenguard_flight_timeouts",
        "Of those, the ones that gave up at the request's deadline.",
        ("kind",),
    ),
    ("tokenguard_fleet_errors", "Fleet (Redis) calls that failed.", ()),
    ("tokenguard_fleet_circuit_trips", "Times the fleet's circuit breaker opened.", ()),
)


def _readings(stats: GuardStats) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Every counter of a snapshot, as ``name -> [(label values, value)]``."""
    found: dict[str, list[tuple[tuple[str, ...], float]]] = {name: [] for name, _, _ in _COUNTERS}
    for v in stats.validations:
        labels = (v.policy, v.result, v.error_type or "", v.path, str(v.cached).lower())
        found["tokenguard_validations"].append((labels, v.count))
    caches = stats.caches
    for name in ("verified", "introspection", "jwks", "metadata", "fleet"):
        cache = getattr(caches, name)
        found["tokenguard_cache_lookups"].append(((name, "hit"), cache.hits))
        found["tokenguard_cache_lookups"].append(((name, "miss"), cache.misses))
    for i in stats.issuers:
        found["tokenguard_jwks_refreshes"].append(((i.issuer, "success"), i.jwks_refreshes))
        found["tokenguard_jwks_refreshes"].append(((i.issuer, "failure"), i.jwks_refresh_failures))
        found["tokenguard_keys_stale_used"].append(((i.issuer,), i.stale_keys_used))
        found["tokenguard_introspections"].append(((i.issuer,), i.introspections))
        found["tokenguard_introspection_failures"].append(((i.issuer,), i.introspection_failures))
        found["tokenguard_introspection_seconds"].append(((i.issuer,), i.introspection_seconds))
        found["tokenguard_introspection_refused"].append(((i.issuer,), i.introspections_refused))
    for kind, count in stats.flight_joins.items():
        found["tokenguard_flight_joins"].append(((kind,), count))
    for kind, count in stats.flight_timeouts.items():
        found["tokenguard_flight_timeouts"].append(((kind,), count))
    if stats.fleet is not None:
        found["tokenguard_fleet_errors"].append(((), stats.fleet.errors))
        found["tokenguard_fleet_circuit_trips"].append(((), stats.fleet.circuit_trips))
    return found


class GuardCounters:
    """The guard's counters as Prometheus counters, brought up to date by :meth:`sync`
    (increments since the last one: in multiprocess mode every worker's file adds its
    own share, so the scrape sums the workers), and the fleet's circuit as a gauge (the
    highest over the live workers: 1 when any of them skips Redis)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counters = {
            name: Counter(name, help_text, labels, registry=registry)
            for name, help_text, labels in _COUNTERS
        }
        self._circuit = Gauge(
            "tokenguard_fleet_circuit",
            "The fleet's circuit breaker: 1 open (Redis skipped), 0 closed.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._seen: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()
        self.synced_at = 0.0  # time.monotonic() of the last sync

    def sync(self, stats: GuardStats) -> None:
        """Add what ``stats`` counted since the last sync."""
        with self._lock:
            self.synced_at = time.monotonic()
            for name, readings in _readings(stats).items():
                counter = self._counters[name]
                for labels, value in readings:
                    key = (name, labels)
                    delta = value - self._seen.get(key, 0)
                    if delta > 0:
                        self._seen[key] = value
                        (counter.labels(*labels) if labels else counter).inc(delta)
                    elif key not in self._seen:
                        self._seen[key] = value
                        if labels:
                            counter.labels(*labels)  # shown at 0
            if stats.fleet is not None:
                self._circuit.set(1 if stats.fleet.circuit_open else 0)
