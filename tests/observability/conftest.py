"""OpenTelemetry's SDK with its in-memory exporters, one set of providers per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a dev dependency")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# The machine's Redis, as the fleet tests use it (skipped without it, except under CI).
from ..fleet.conftest import prefix, redis_url

Attributes = frozenset[tuple[str, Any]]
__all__ = ["Telemetry", "attrs", "prefix", "redis_url", "telemetry"]


@dataclass
class Telemetry:
    """Providers whose spans and metrics stay in memory for the test to read."""

    spans_out: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self) -> list[ReadableSpan]:
        """The finished spans, in the order they ended."""
        return list(self.spans_out.get_finished_spans())

    def metrics(self) -> dict[str, dict[Attributes, Any]]:
        """Every metric point now: a counter's or gauge's value, a histogram's
        ``(count, sum)``, by metric name and attribute set."""
        found: dict[str, dict[Attributes, Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == "tokenguard"
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        if isinstance(point, HistogramDataPoint):
                            points[key] = (point.count, point.sum)
                        else:
                            points[key] = point.value
        return found

    def nonzero(self, name: str) -> dict[Attributes, Any]:
        """The points of one metric that are not zero."""
        return {k: v for k, v in self.metrics().get(name, {}).items() if v}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def attrs(**values: Any) -> Attributes:
    """An attribute set, with dotted names written as ``tokenguard__policy``."""
    return frozenset((name.replace("__", "."), value) for name, value in values.items())
