"""Prometheus metrics of the gateway, and an httpx transport that measures the calls
the guard makes to authorization servers.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``tokenguard
gateway`` before the workers start) makes every worker write its samples there and
``/metrics`` add them up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "MeasuredTransport"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_DECISION_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The gateway's metrics, in their own registry (several apps may share a process).

    What the guard counts itself (caches, fetches; ``guard.stats()``, issue 12) belongs
    in a collector registered on :attr:`registry`, read at scrape time.
    """

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
            "Requests to authorization servers (metadata, JWKS, introspection).",
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


class MeasuredTransport(httpx.AsyncBaseTransport):
    """Wraps the guard's HTTP transport to time each request to an authorization server
    and count failures. Only the host is recorded, never a URL, header or body."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as error:
            self._metrics.upstream.labels(host, "error").observe(time.perf_counter() - started)
            self._metrics.upstream_errors.labels(host, type(error).__name__).inc()
            raise
        outcome = f"{response.status_code // 100}xx"
        self._metrics.upstream.labels(host, outcome).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            self._metrics.upstream_errors.labels(host, f"http_{response.status_code}").inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
