"""Opaque tokens (RFC 7662 introspection) and request stampedes against the AuthServer."""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter_ns, thread_time_ns
from typing import Any, Protocol

import httpx
from _common import (
    AUDIENCE,
    REQUIRED_SCOPE,
    TOKEN_SCOPES,
    Budget,
    Contender,
    Table,
    measure,
    paired_ratio,
    ratio,
    us,
)
from _target import Target

from tokenguard import ClientSecretBasic, Issuer, Policy, Settings, TokenGuard, TokenInfo
from tokenguard.testing import AuthServer

POLICY = "api"
HTTPX_SYNC = "plain httpx.Client POST + JSON"
TG_UNCACHED = "tokenguard uncached (each token new)"
TG_CACHED = "tokenguard cached (verified-cache hit)"
TG_INTRO_CACHED = "tokenguard introspection-cache hit (verified cache off)"
HTTPX_ASYNC = "plain httpx.AsyncClient POST + JSON"
TG_ASYNC = "tokenguard avalidate (own client), uncached"
STAMPEDE_DELAY = 0.2


class Endpoints(Protocol):
    """What a guard needs to know about an authorization server."""

    @property
    def issuer(self) -> str: ...
    @property
    def jwks_uri(self) -> str: ...
    @property
    def introspection_endpoint(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...


def opaque_guard(server: Endpoints, **settings: Any) -> TokenGuard:
    """Endpoints configured explicitly (no discovery); hybrid mode; one required scope."""
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                jwks_uri=server.jwks_uri,
                introspection_endpoint=server.introspection_endpoint,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name=POLICY, audience=AUDIENCE, required_scopes=[REQUIRED_SCOPE])],
        settings=Settings(**settings),
    )


def introspection_form(token: str) -> dict[str, str]:
    return {"token": token, "token_type_hint": "access_token"}


def check_answer(document: Any) -> None:
    if not (isinstance(document, dict) and document.get("active") is True):
        raise AssertionError("introspection did not answer active")


# -- sync: per-validation latency -----------------------------------------------------


def sync_table(server: Target, budget: Budget) -> Table:
    endpoint = server.introspection_endpoint
    auth = httpx.BasicAuth(server.client_id, server.client_secret)
    headers = {"Accept": "application/json"}
    count, warm = budget.http_tokens, 20
    guard = opaque_guard(server)
    no_verified = opaque_guard(server, verified_cache_size=0)
    with httpx.Client() as client:

        def plain(token: str) -> object:
            response = client.post(
                endpoint, data=introspection_form(token), auth=auth, headers=headers
            )
            document = response.json()
            check_answer(document)
            return document

        def uncached(token: str) -> object:
            return guard.validate(token, POLICY)

        def introspection_cached(token: str) -> object:
            return no_verified.validate(token, POLICY)

        repeated = server.opaque_tokens(2)
        before = server.request_count("introspection")
        rows = [
            Contender(HTTPX_SYNC, plain, server.opaque_tokens(count), server.opaque_tokens(warm)),
            Contender(
                TG_UNCACHED, uncached, server.opaque_tokens(count), server.opaque_tokens(warm)
            ),
            Contender(TG_CACHED, uncached, [repeated[0]] * count, [repeated[0]]),
            Contender(TG_INTRO_CACHED, introspection_cached, [repeated[1]] * count, [repeated[1]]),
        ]
        timings = measure(rows, batch=budget.http_batch, rounds=budget.rounds, cpu=True)
        requests = server.request_count("introspection") - before
    guard.close()
    no_verified.close()

    medians = {name: t.median_us for name, t in timings.items()}
    cpus = {name: t.cpu_median_us for name, t in timings.items()}
    table = Table(
        f"Opaque token, sync: median µs per validation (loopback AuthServer {server.where})",
        ("", "median µs", "× httpx POST", "client CPU µs", "CPU × httpx"),
    )
    for row in rows:
        name = row.name
        table.rows.append(
            (
                name,
                us(medians[name]),
                ratio(paired_ratio(timings[name], timings[HTTPX_SYNC])),
                us(cpus[name]),
                ratio(paired_ratio(timings[name], timings[HTTPX_SYNC], cpu=True)),
            )
        )
    timed = timings[TG_UNCACHED].calls * budget.http_batch
    expected = timings[HTTPX_SYNC].calls * budget.http_batch + timed + 2 * warm + len(repeated)
    table.notes.append(
        f"{timed:,} validations per contender, batches of {budget.http_batch}; "
        f"introspection requests: {requests:,} (expected {expected:,}: one per new token "
        "and warm-up token, none for the cached ones)"
    )
    table.notes.append(
        "client CPU: CPU time of the validating thread (time.thread_time_ns), so the "
        "client's own work without the AuthServer's; ratios are taken round by round "
        f"({budget.rounds} interleaved rounds), then the median over rounds"
    )
    garbage = ", ".join(
        f"{row.name.split(' (')[0]} {timings[row.name].garbage_per_call:.0f}" for row in rows[:2]
    )
    table.notes.append(f"objects left for the cycle collector per call: {garbage}")
    return table


# -- async: throughput at fixed concurrency -------------------------------------------


@dataclass
class Throughput:
    per_second: float  # completed validations (successful or not) per second
    mean_latency_ms: float
    p95_latency_ms: float
    cpu_us: float  # event-loop thread CPU time per validation
    failures: int


async def concurrently(
    call: Callable[[str], Awaitable[object]], tokens: Sequence[str], concurrency: int
) -> Throughput:
    """``concurrency`` tasks pull tokens from one queue until it is empty."""
    pending: Iterator[str] = iter(tokens)
    latencies: list[int] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for token in pending:  # shared iterator: next() never awaits, so no races
            began = perf_counter_ns()
            try:
                await call(token)
            except Exception:
                failures += 1
            latencies.append(perf_counter_ns() - began)

    cpu_began, began = thread_time_ns(), perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = (perf_counter_ns() - began) / 1e9
    cpu = (thread_time_ns() - cpu_began) / 1000 / len(tokens)
    latencies.sort()
    return Throughput(
        per_second=len(tokens) / wall,
        mean_latency_ms=statistics.fmean(latencies) / 1e6,
        p95_latency_ms=latencies[int(len(latencies) * 0.95)] / 1e6,
        cpu_us=cpu,
        failures=failures,
    )


async def async_runs(server: Target, budget: Budget) -> tuple[dict[str, Throughput], int, int, int]:
    endpoint = server.introspection_endpoint
    auth = httpx.BasicAuth(server.client_id, server.client_secret)
    headers = {"Accept": "application/json"}
    concurrency = budget.concurrency
    warm = concurrency * 2
    client = httpx.AsyncClient()  # default limits (100 / 20 kept alive), as tokenguard's own
    guard = opaque_guard(server)

    async def plain(token: str) -> object:
        response = await client.post(
            endpoint, data=introspection_form(token), auth=auth, headers=headers
        )
        document = response.json()
        check_answer(document)
        return document

    async def validate(token: str) -> object:
        return await guard.avalidate(token, POLICY)

    calls = {HTTPX_ASYNC: plain, TG_ASYNC: validate}
    runs: dict[str, list[Throughput]] = {name: [] for name in calls}
    warm_failures = 0
    try:
        before = server.request_count("introspection")
        for _ in range(budget.async_repeats):
            for name, call in calls.items():
                # A warm-up right before each timed run, with the same client: the pool
                # is full and the AuthServer's threads for it are running.
                warmed = await concurrently(call, server.opaque_tokens(warm), concurrency)
                warm_failures += warmed.failures
                tokens = server.opaque_tokens(budget.async_tokens)
                runs[name].append(await concurrently(call, tokens, concurrency))
        requests = server.request_count("introspection") - before
        expected = len(calls) * budget.async_repeats * (budget.async_tokens + warm)
    finally:
        await client.aclose()
        await guard.aclose()
    chosen = {
        name: sorted(results, key=lambda r: r.per_second)[len(results) // 2]
        for name, results in runs.items()
    }
    failures = warm_failures + sum(r.failures for results in runs.values() for r in results)
    return chosen, requests, expected, failures


def async_table(server: Target, budget: Budget) -> Table:
    results, requests, expected, failures = asyncio.run(async_runs(server, budget))
    table = Table(
        f"Opaque token, async, {budget.concurrency} concurrent tasks: throughput",
        (
            "",
            "validations/s",
            "× httpx",
            "mean ms",
            "p95 ms",
            "failed",
            "client CPU µs",
            "loop busy",
        ),
    )
    base = results[HTTPX_ASYNC]
    for name, result in results.items():
        table.rows.append(
            (
                name,
                f"{result.per_second:,.0f}",
                f"×{result.per_second / base.per_second:.2f}",
                f"{result.mean_latency_ms:.1f}",
                f"{result.p95_latency_ms:.1f}",
                f"{result.failures:,}",
                f"{us(result.cpu_us)} (×{result.cpu_us / base.cpu_us:.2f})",
                f"{result.per_second * result.cpu_us / 1e6:.0%}",
            )
        )
    table.notes.append(
        f"{budget.async_tokens:,} new tokens per run, after a warm-up of {2 * budget.concurrency} "
        f"with the same client; median of {budget.async_repeats} run(s) per contender, "
        f"alternating; introspection requests: {requests:,} (expected {expected:,})"
    )
    table.notes.append(
        "both use httpx's default limits (100 connections, 20 kept alive): tokenguard's own "
        "AsyncClient and a plain httpx.AsyncClient(); 'failed': errors in the reported run "
        f"(in all runs, warm-ups included: {failures})"
    )
    table.notes.append(
        "client CPU: CPU time of the event-loop thread per validation (time.thread_time_ns); "
        "loop busy: that × validations/s. Near 100%, the client is the bottleneck, and "
        "most of its time goes to httpx/httpcore's connection-pool bookkeeping, which grows "
        "with the number of connections and queued requests (the same for both rows)"
    )
    table.notes.append(
        f"the AuthServer (a Python thread-per-connection server) runs {server.where}"
    )
    if importlib.util.find_spec("sniffio") is None:
        table.notes.append(
            "sniffio is not installed: httpcore then retries 'import sniffio' (a failed "
            "import searches sys.path) each time it makes an async lock, several times per "
            "request, for both rows alike"
        )
    return table


# -- stampedes: how many AS requests N concurrent validations of one new token cause --


@dataclass
class Stampede:
    succeeded: int
    requests: int  # to the endpoint the token needs (introspection or jwks)
    metadata_requests: int


def with_threads(validate: Callable[[], TokenInfo], count: int) -> int:
    barrier = threading.Barrier(count)
    ok: list[bool] = []

    def one() -> None:
        barrier.wait(timeout=60)
        try:
            validate()
        except Exception:
            ok.append(False)
        else:
            ok.append(True)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return sum(ok)


async def with_tasks(guard: TokenGuard, token: str, count: int) -> int:
    try:
        results = await asyncio.gather(
            *(guard.avalidate(token, POLICY) for _ in range(count)), return_exceptions=True
        )
    finally:
        await guard.aclose()
    return sum(isinstance(r, TokenInfo) for r in results)


def stampede(server: AuthServer, *, kind: str, runner: str, delay: float, count: int) -> Stampede:
    """``count`` simultaneous validations of one token the (fresh) guard has never seen."""
    endpoint = "introspection" if kind == "opaque" else "jwks"
    guard = opaque_guard(server)  # fresh: no cached keys, answers or tokens
    if kind == "opaque":
        token = server.issue_opaque(scopes=TOKEN_SCOPES, lifetime=3600)
    else:
        token = server.issue_jwt(alg="ES256", scopes=TOKEN_SCOPES, lifetime=3600)
    server.set_delay(delay, endpoint)
    before = server.request_count(endpoint), server.request_count("metadata")
    try:
        if runner == "threads":
            with guard:
                succeeded = with_threads(lambda: guard.validate(token, POLICY), count)
        else:
            succeeded = asyncio.run(with_tasks(guard, token, count))
    finally:
        server.set_delay(0, endpoint)
    return Stampede(
        succeeded,
        server.request_count(endpoint) - before[0],
        server.request_count("metadata") - before[1],
    )


def stampede_table(server: AuthServer, budget: Budget) -> Table:
    table = Table(
        f"Stampede: {budget.stampede:,} concurrent validations of one new token",
        ("token", "concurrency", "AS answer delay", "succeeded", "AS requests"),
        left=2,
    )
    metadata = 0
    for kind, endpoint in (("opaque", "introspection"), ("JWT (ES256)", "jwks")):
        for runner in ("threads", "asyncio tasks"):
            for delay in (STAMPEDE_DELAY,) if budget.quick else (0.0, STAMPEDE_DELAY):
                result = stampede(
                    server,
                    kind="opaque" if kind == "opaque" else "jwt",
                    runner="threads" if runner == "threads" else "tasks",
                    delay=delay,
                    count=budget.stampede,
                )
                metadata += result.metadata_requests
                table.rows.append(
                    (
                        f"{kind}: {endpoint}",
                        f"{budget.stampede:,} {runner}",
                        f"{delay * 1000:.0f} ms",
                        f"{result.succeeded:,}",
                        f"{result.requests:,}",
                    )
                )
    table.notes.append(
        "a fresh guard each time (JWT: JWKS not yet fetched); AS requests counted with "
        "AuthServer.request_count before/after; metadata requests in all these runs: "
        f"{metadata} (the endpoints are configured, so no discovery)"
    )
    table.notes.append(
        "threads start together on a threading.Barrier; tasks are one asyncio.gather; "
        "the delay keeps the first request in flight while the others arrive"
    )
    return table


def run(server: Target, budget: Budget) -> list[Table]:
    return [sync_table(server, budget), async_table(server, budget)]
