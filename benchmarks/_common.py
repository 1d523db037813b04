"""Shared pieces of the benchmark: run budgets, the timing loop and table rendering."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns, thread_time_ns
from typing import Any

#: The audience of every benchmark token (the embedded AuthServer's default).
AUDIENCE = "urn:test:api"
#: The scope every benchmark policy requires; the tokens carry it and one more.
REQUIRED_SCOPE = "orders:read"
TOKEN_SCOPES = ("orders:read", "orders:write")


@dataclass(frozen=True)
class Budget:
    """How much work each section does (``--quick`` is a smoke run)."""

    quick: bool
    jwt_tokens: int  # measured tokens per algorithm (each validated once per contender)
    jwt_warmup: int  # extra tokens per algorithm, validated before timing starts
    batch: int  # calls per timed batch
    rounds: int  # contenders are interleaved over this many rounds
    http_tokens: int  # sync introspection: measured validations per contender
    http_batch: int
    async_tokens: int  # async introspection: validations per throughput run
    async_repeats: int  # throughput runs per contender (the median run is reported)
    concurrency: int
    stampede: int  # concurrent validations of one new token
    memory_tokens: int  # verified-cache fill
    intro_memory_tokens: int  # introspection-cache fill (HTTP round trips: fewer)
    import_runs: int

    @classmethod
    def full(cls) -> Budget:
        return cls(
            quick=False,
            jwt_tokens=3000,
            jwt_warmup=200,
            batch=20,
            rounds=10,
            http_tokens=1000,
            http_batch=5,
            async_tokens=600,
            async_repeats=5,
            concurrency=64,
            stampede=1000,
            memory_tokens=100_000,
            intro_memory_tokens=5000,
            import_runs=9,
        )

    @classmethod
    def smoke(cls) -> Budget:
        return cls(
            quick=True,
            jwt_tokens=200,
            jwt_warmup=40,
            batch=10,
            rounds=2,
            http_tokens=100,
            http_batch=5,
            async_tokens=128,
            async_repeats=1,
            concurrency=64,
            stampede=1000,
            memory_tokens=1000,
            intro_memory_tokens=200,
            import_runs=3,
        )


# -- timing ---------------------------------------------------------------------------


@dataclass
class Contender:
    """One measured function and the items it is called with, each exactly once."""

    name: str
    fn: Callable[[Any], object]
    items: Sequence[Any]
    warmup: Sequence[Any] = ()


@dataclass
class Timing:
    """Per-call times in nanoseconds: one sample per timed batch (batch time / batch size).

    ``cpu_samples`` (when asked for) are the calling thread's CPU time per call in the
    same batches (so not the in-process AuthServer's threads); ``garbage`` counts the
    objects the cycle collector found after the calls.
    """

    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    garbage: int = 0
    timed_calls: int = 0
    by_round: list[list[float]] = field(default_factory=list)  # the samples, per round
    cpu_by_round: list[list[float]] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    @property
    def cpu_median_us(self) -> float:
        return statistics.median(self.cpu_samples) / 1000

    @property
    def calls(self) -> int:
        return len(self.samples)

    @property
    def garbage_per_call(self) -> float:
        return self.garbage / max(self.timed_calls, 1)


def _paired(
    mine: list[list[float]], base: list[list[float]], combine: Callable[[float, float], float]
) -> float:
    """Median over rounds of ``combine(my round median, base's round median)``."""
    per_round = [
        combine(statistics.median(a), statistics.median(b))
        for a, b in zip(mine, base, strict=True)
        if a and b
    ]
    return statistics.median(per_round)


def paired_ratio(timing: Timing, base: Timing, *, cpu: bool = False) -> float:
    """``timing`` / ``base``, compared round by round (both ran in every round, moments
    apart), then the median over rounds: a slow spell of the machine that lasts a round
    moves both sides of a ratio and is voted out by the other rounds."""
    if cpu:
        return _paired(timing.cpu_by_round, base.cpu_by_round, lambda a, b: a / b)
    return _paired(timing.by_round, base.by_round, lambda a, b: a / b)


def paired_difference_us(timing: Timing, base: Timing, *, cpu: bool = False) -> float:
    """``timing`` - ``base`` in µs, compared round by round like :func:`paired_ratio`."""
    if cpu:
        return _paired(timing.cpu_by_round, base.cpu_by_round, lambda a, b: (a - b) / 1000)
    return _paired(timing.by_round, base.by_round, lambda a, b: (a - b) / 1000)


def measure(
    contenders: Sequence[Contender], *, batch: int, rounds: int, cpu: bool = False
) -> dict[str, Timing]:
    """Median-ready per-call timings for each contender.

    Every contender is warmed up on its own ``warmup`` items, then the contenders are
    interleaved: ``items`` is cut into ``rounds`` consecutive slices and in each round
    every contender (in a rotating order) runs through its slice in batches of
    ``batch`` calls, each batch timed with ``perf_counter_ns`` (and, with ``cpu``,
    ``thread_time_ns`` outside that window). Each item is used at most once, so a list
    of distinct tokens means every timed call sees a new token. The garbage collector
    is disabled while timing; it runs after each slice, and what it finds is counted.
    """
    for contender in contenders:
        for item in contender.warmup:
            contender.fn(item)
    timings = {c.name: Timing() for c in contenders}
    slices = {c.name: _cut(c.items, rounds) for c in contenders}
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for number in range(rounds):
            shift = number % len(contenders)
            for contender in (*contenders[shift:], *contenders[:shift]):
                part = slices[contender.name][number]
                fn, timing = contender.fn, timings[contender.name]
                timing.by_round.append([])
                timing.cpu_by_round.append([])
                for start in range(0, len(part) - batch + 1, batch):
                    chunk = part[start : start + batch]
                    cpu_began = thread_time_ns() if cpu else 0
                    began = perf_counter_ns()
                    for item in chunk:
                        fn(item)
                    ended = perf_counter_ns()
                    if cpu:
                        cpu_sample = (thread_time_ns() - cpu_began) / batch
                        timing.cpu_samples.append(cpu_sample)
                        timing.cpu_by_round[-1].append(cpu_sample)
                    timing.samples.append((ended - began) / batch)
                    timing.by_round[-1].append((ended - began) / batch)
                    timing.timed_calls += batch
                # Everything allocated since the last collection is still in the youngest
                # generation (the collector is off), so collecting it finds this slice's
                # cyclic garbage, without the cost of a full collection.
                timing.garbage += gc.collect(0)
    finally:
        if enabled:
            gc.enable()
    return timings


def _cut(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    size = len(items) // parts
    return [items[i * size : (i + 1) * size] for i in range(parts)]


# -- formatting -----------------------------------------------------------------------


def us(value: float) -> str:
    """Microseconds with a precision that suits the magnitude."""
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(value: float, base: float = 1.0) -> str:
    return f"×{value / base:.2f}"


@dataclass
class Table:
    """A titled table with optional notes; rendered as aligned text or as Markdown."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: int = 1  # leading columns aligned left (the others are numbers: right)

    def render(self, *, markdown: bool) -> str:
        return self._markdown() if markdown else self._text()

    def _text(self) -> str:
        cells = [list(self.columns), *[list(r) for r in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row: Sequence[str]) -> str:
            cells = (
                cell.ljust(width) if i < self.left else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            return "  ".join(cells).rstrip()

        out = [self.title, "=" * len(self.title)]
        if any(self.columns):
            out.append(line(self.columns))
            out.append("  ".join("-" * w for w in widths))
        out.extend(line(row) for row in self.rows)
        out.extend(f"  * {note}" for note in self.notes)
        return "\n".join(out)

    def _markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        marks = [":---" if i < self.left else "---:" for i in range(len(self.columns))]
        out.append("|" + "|".join(marks) + "|")
        out.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            out.append("")
            out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out)
