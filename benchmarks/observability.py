"""What observability costs a validation (issue 12), in one run, as ratios.

    python benchmarks/observability.py            # full run (about a minute)
    python benchmarks/observability.py --quick    # smoke run (a few seconds)
    python benchmarks/observability.py --markdown # the tables as Markdown (docs/observability.md)

Each variant runs in a process of its own, all built alike (one HS256 issuer with a
static key, so no HTTP is involved), and the parent interleaves batches across them, so
every variant sees the same machine at the same moments:

- ``uncounted``: today's source with the one counting line of the cached path removed
  (a copy of ``src/`` in a temporary directory): what the cached path cost before.
- ``stats``: as shipped, nothing listening (``guard.stats()`` reads the counters).
- ``stats (again)``: the same, a second process: the noise between two identical runs.
- ``otel no-op``: ``guard.instrument()`` with OpenTelemetry's no-op providers (what an
  application that installed the API but no SDK gets).
- ``otel SDK``: the OpenTelemetry SDK with an in-memory span exporter (simple span
  processor) and an in-memory metric reader.

A third table (``--gateway``, on by default) is about the gateway's HTTP client: opaque
tokens through the gateway application (ASGI, in process, 64 at once, each a new
introspection against a fast authorization server in a child process), the gateway as it
was (the guard on an ``httpx.AsyncClient`` whose transport timed each request for the
upstream metrics) against the gateway as it is (the guard's own aiohttp client, timed
through the guard's observer), alternating in one run.

Two paths: the cached path (a token already in the verified-token cache: what a busy
resource server mostly runs) and a first-seen JWT (parse, claim checks, HMAC, cache put:
a validation that needs work, so it makes a span when instrumented). The figure is CPU
time per call (``time.thread_time_ns``, GC off while timing), the median over batches.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://bench.example"
AUDIENCE = "urn:bench:api"
SECRET = b"observability-benchmark-secret-0123456789"
#: The counting line of the cached path (src/tokenguard/core/engine.py).
COUNTING = "runtime.hits.add()"

VARIANTS = ("uncounted", "stats", "stats (again)", "otel no-op", "otel SDK")


# -- the worker: one variant in one process ---------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mint(count: int) -> list[str]:
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": "k"}).encode())
    now = int(time.time())
    tokens = []
    for n in range(count):
        claims = {
            "iss": ISSUER,
            "sub": f"user-{n}",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "jti": f"jti-{n}",
            "client_id": "bench-client",
            "scope": "orders:read orders:write",
        }
        body = _b64(json.dumps(claims).encode())
        signature = hmac.digest(SECRET, f"{header}.{body}".encode(), hashlib.sha256)
        tokens.append(f"{header}.{body}.{_b64(signature)}")
    return tokens


def _guard(variant: str) -> Any:
    import tokenguard

    guard = tokenguard.TokenGuard(
        issuers=[
            tokenguard.Issuer(
                ISSUER, static_jwks={"keys": [{"kty": "oct", "kid": "k", "k": _b64(SECRET)}]}
            )
        ],
        policies=[
            tokenguard.Policy(
                name="api",
                audience=AUDIENCE,
                algorithms=["HS256"],
                required_scopes=["orders:read"],
            )
        ],
        settings={"verified_cache_size": 1_000_000},
    )
    if variant == "otel no-op":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        guard.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    elif variant == "otel SDK":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader()
        guard.instrument(
            tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
        )
        guard._bench_spans = spans  # cleared between batches
        guard._bench_reader = reader
    return guard


def worker(variant: str, fresh_needed: int) -> None:
    """Answer the parent's commands on stdin: ``cached N`` / ``fresh N`` time N calls and
    print the CPU nanoseconds they took; ``check`` prints what was counted."""
    guard = _guard(variant)
    cached_token = _mint(1)[0]
    guard.validate(cached_token, "api")
    fresh = iter(_mint(fresh_needed))
    validate = guard.validate
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "check":
            stats = guard.stats()
            reader = getattr(guard, "_bench_reader", None)
            if reader is not None:
                reader.get_metrics_data()  # the metrics collect (and read the counters)
            print(json.dumps({"validations": stats.total()}), flush=True)
            continue
        count = int(arg)
        tokens = (
            [cached_token] * count if command == "cached" else [next(fresh) for _ in range(count)]
        )
        spans = getattr(guard, "_bench_spans", None)
        if spans is not None:
            spans.clear()
        gc.collect()
        gc.disable()
        started = time.thread_time_ns()
        for token in tokens:
            validate(token, "api")
        elapsed = time.thread_time_ns() - started
        gc.enable()
        print(elapsed, flush=True)


# -- the parent ---------------------------------------------------------------------------


class Worker:
    def __init__(self, variant: str, fresh_needed: int, pythonpath: str | None) -> None:
        env = dict(os.environ)
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
            # A temporary copy of the source: under ./dev test, coverage's subprocess patch
            # would record files that are gone by the report ("No source for code").
            env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
        self.variant = variant
        self.process = subprocess.Popen(  # noqa: S603 - this script, this interpreter
            [sys.executable, __file__, "--worker", variant, "--fresh", str(fresh_needed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.ask_line() == "ready", f"{variant} did not start"

    def ask_line(self, command: str | None = None) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def time(self, command: str, count: int) -> float:
        return int(self.ask_line(f"{command} {count}")) / count

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def uncounted_source(into: Path) -> str:
    """A copy of src/ without the cached path's counting line; its PYTHONPATH entry."""
    source = into / "src"
    shutil.copytree(ROOT / "src", source, ignore=shutil.ignore_patterns("__pycache__"))
    engine = source / "tokenguard" / "core" / "engine.py"
    lines = engine.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip().split("#")[0].strip() != COUNTING]
    if len(kept) != len(lines) - 1:
        raise SystemExit(f"expected exactly one {COUNTING!r} line in {engine}")
    engine.write_text("".join(kept), encoding="utf-8")
    return str(source)


def measure(quick: bool) -> dict[str, dict[str, list[float]]]:
    rounds = 4 if quick else 30
    cached_batch = 2_000 if quick else 20_000
    fresh_batch = 200 if quick else 1_000
    results: dict[str, dict[str, list[float]]] = {"cached": {}, "fresh": {}}
    with tempfile.TemporaryDirectory(prefix="tokenguard-bench-") as tmp:
        uncounted = uncounted_source(Path(tmp))
        workers = [
            Worker(v, fresh_batch * (rounds + 1), uncounted if v == "uncounted" else None)
            for v in VARIANTS
        ]
        try:
            for worker_ in workers:  # warm up: the first batch of each path
                worker_.time("cached", cached_batch)
                worker_.time("fresh", fresh_batch)
            for n in range(rounds):
                # A different first variant each round: no variant always runs first.
                order = workers[n % len(workers) :] + workers[: n % len(workers)]
                for worker_ in order:
                    results["cached"].setdefault(worker_.variant, []).append(
                        worker_.time("cached", cached_batch)
                    )
                for worker_ in order:
                    results["fresh"].setdefault(worker_.variant, []).append(
                        worker_.time("fresh", fresh_batch)
                    )
            for worker_ in workers:
                worker_.ask_line("check")  # every variant counted, and its metrics collect
        finally:
            for worker_ in workers:
                worker_.close()
    return results


def table(title: str, values: dict[str, list[float]], reference: str, markdown: bool) -> str:
    base = statistics.median(values[reference])
    header = ("variant", "CPU ns per call (median)", "spread (p25-p75)", f"vs {reference}")
    rows = []
    for variant in VARIANTS:
        samples = sorted(values[variant])
        median = statistics.median(samples)
        q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else (median,) * 3
        rows.append((variant, f"{median:,.0f}", f"{q1:,.0f}-{q3:,.0f}", f"{median / base:.3f}x"))
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = [title]
    for row in (header, *rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


# -- the gateway's upstream client ------------------------------------------------------


def gateway_upstream(quick: bool) -> dict[str, list[float]]:
    """Validations per second through the gateway app, old and new HTTP client wiring."""
    import asyncio

    import httpx

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _fast_as import fast_as

    from tokenguard import TokenGuard
    from tokenguard.gateway import create_app
    from tokenguard.gateway.metrics import GatewayMetrics

    class TimedTransport(httpx.AsyncBaseTransport):
        """The gateway's former wiring: each request timed around httpx's transport."""

        def __init__(self, inner: httpx.AsyncBaseTransport, metrics: GatewayMetrics) -> None:
            self._inner = inner
            self._metrics = metrics

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            started = time.perf_counter()
            response = await self._inner.handle_async_request(request)
            outcome = f"{response.status_code // 100}xx"
            self._metrics.upstream.labels(request.url.host, outcome).observe(
                time.perf_counter() - started
            )
            return response

    rounds, per_round, concurrency = (2, 300, 64) if quick else (6, 3000, 64)
    results: dict[str, list[float]] = {}
    with fast_as() as server:
        config = {
            "issuers": [
                {
                    "issuer": server.issuer,
                    "introspection_endpoint": server.introspection_endpoint,
                    "allow_insecure_http": True,
                    "client_auth": {
                        "method": "client_secret_basic",
                        "client_id": server.client_id,
                        "client_secret": server.client_secret,
                    },
                }
            ],
            "policies": [{"name": "api", "audience": "urn:test:api"}],
            "routes": [{"path": "/**", "policy": "api"}],
            "gateway": {"access_log": False},
        }

        def old_app() -> Any:
            app = create_app(config)
            client = httpx.AsyncClient(
                transport=TimedTransport(
                    httpx.AsyncHTTPTransport(
                        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)
                    ),
                    app.metrics,
                ),
                follow_redirects=False,
            )
            parts = {name: getattr(app.config.guard, name) for name in ("issuers", "policies")}
            guard = TokenGuard.from_config(parts, async_http_client=client)
            old = create_app(config, guard=guard)
            guard._engine.observer.on_exchange = None  # the transport times, as it did
            old._bench_client = client
            return old

        async def drive(app: Any, tokens: list[str]) -> float:
            queue = list(tokens)

            async def one_worker() -> None:
                while queue:
                    token = queue.pop()
                    sent: list[dict[str, Any]] = []

                    async def send(message: dict[str, Any], into: list[Any] = sent) -> None:
                        into.append(message)

                    async def receive() -> dict[str, Any]:
                        return {"type": "http.request", "body": b"", "more_body": False}

                    scope = {
                        "type": "http",
                        "method": "GET",
                        "path": "/envoy/orders/1",
                        "raw_path": b"/envoy/orders/1",
                        "query_string": b"",
                        "headers": [
                            (b"authorization", f"Bearer {token}".encode()),
                            (b"host", b"api.example.com"),
                        ],
                        "client": ("127.0.0.1", 5000),
                    }
                    await app(scope, receive, send)
                    assert sent[0]["status"] == 200, sent

            started = time.perf_counter()
            await asyncio.gather(*(one_worker() for _ in range(concurrency)))
            return len(tokens) / (time.perf_counter() - started)

        async def run() -> None:
            apps = {
                "httpx + timed transport (before)": old_app(),
                "own client (now)": create_app(config),
            }
            for app in apps.values():  # warm up: connections, imports
                await drive(app, server.opaque_tokens(concurrency * 2))
            for n in range(rounds):
                names = list(apps) if n % 2 == 0 else list(reversed(apps))
                for name in names:
                    rate = await drive(apps[name], server.opaque_tokens(per_round))
                    results.setdefault(name, []).append(rate)
            for app in apps.values():
                await app.aclose()
                client = getattr(app, "_bench_client", None)
                if client is not None:
                    await client.aclose()

        asyncio.run(run())
    return results


def rate_table(values: dict[str, list[float]], markdown: bool) -> str:
    names = list(values)
    base = statistics.median(values[names[0]])
    header = ("gateway HTTP client", "validations/s (median)", "runs", f"vs {names[0]}")
    rows = [
        (
            name,
            f"{statistics.median(v):,.0f}",
            ", ".join(f"{x:,.0f}" for x in v),
            f"{statistics.median(v) / base:.2f}x",
        )
        for name, v in values.items()
    ]
    title = "Gateway, opaque tokens (each a new introspection), 64 at once"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = [title]
    for row in (header, *rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (numbers are rough)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument(
        "--no-gateway", action="store_true", help="skip the gateway's HTTP client table"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--fresh", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.fresh)
        return 0
    started = time.perf_counter()
    results = measure(args.quick)
    mode = "quick (rough)" if args.quick else "full"
    print(
        f"Observability cost, {mode}; python {sys.version.split()[0]}, "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} CPUs, "
        f"load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        table(
            "Cached path (a token in the verified-token cache)",
            results["cached"],
            "uncounted",
            args.markdown,
        )
    )
    print()
    print(
        table(
            "First-seen JWT (HS256, static key: a validation that needs work)",
            results["fresh"],
            "stats",
            args.markdown,
        )
    )
    if not args.no_gateway:
        print()
        print(rate_table(gateway_upstream(args.quick), args.markdown))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
