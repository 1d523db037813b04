"""Introspection throughput (issue 10 §1): tokenguard against the bare HTTP clients, sync
and async, and what a flood of random opaque tokens makes the authorization server do.

Every table talks to one :mod:`_fast_as` server in a child process (its own interpreter
and GIL): a bare asyncio RFC 7662 endpoint fast enough that the clients under test, not
the server, set the pace. The contenders of a table run interleaved, in rounds, on the
same server, so a slow spell of the (shared) machine hits them alike; ratios are taken
round by round and the median is reported.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import importlib.util
import json
import statistics
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns, thread_time_ns
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from _common import Budget, Table, us
from _fast_as import FastAS, fast_as, random_token

from tokenguard import (
    ClientSecretBasic,
    InactiveToken,
    Issuer,
    Policy,
    Settings,
    TokenGuard,
    ValidationUnavailable,
)
from tokenguard.core.exchange import HttpResponse
from tokenguard.core.introspection import build_request

POLICY = "api"
AUDIENCE = "urn:test:api"
REQUIRED_SCOPE = "orders:read"

BARE_AIOHTTP = "bare aiohttp POST + JSON"
TG_OWN = "tokenguard (own client)"
TG_HTTPX = "tokenguard, caller's httpx client"
TG_HTTPX_AIOHTTP = "tokenguard, caller's httpx client over httpx-aiohttp"
BARE_HTTPX = "bare httpx POST + JSON"
BARE_HTTPX_AIOHTTP = "bare httpx over httpx-aiohttp POST + JSON"
BARE_HTTPX_8 = "bare httpx, at most 8 in flight"
BARE_HTTP_CLIENT = "bare http.client keep-alive POST + JSON"
BARE_URLLIB3 = "bare urllib3 PoolManager POST + JSON"
TG_CACHED = "tokenguard, token seen before (verified-cache hit)"
TG_TRANSPORT = "tokenguard's client alone (request in, response out, no checks)"


def guard(server: FastAS, **settings: Any) -> TokenGuard:
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                introspection_endpoint=server.introspection_endpoint,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name=POLICY, audience=AUDIENCE, required_scopes=[REQUIRED_SCOPE])],
        settings=Settings(**settings),
    )


def _headers(server: FastAS) -> dict[str, str]:
    credentials = f"{server.client_id}:{server.client_secret}".encode()
    return {
        "Authorization": "Basic " + base64.b64encode(credentials).decode(),
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _form(token: str) -> bytes:
    return urlencode({"token": token, "token_type_hint": "access_token"}).encode()


def _check(document: Any) -> None:
    if not (isinstance(document, dict) and document.get("active") is True):
        raise AssertionError("introspection did not answer active")


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(int(len(sorted_values) * fraction), len(sorted_values) - 1)]


# -- async: throughput at 64 concurrent tasks -----------------------------------------


@dataclass
class Run:
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    failures: int


async def _concurrently(
    call: Callable[[str], Awaitable[object]], tokens: Sequence[str], concurrency: int
) -> Run:
    """``concurrency`` tasks pull tokens from one iterator until it is exhausted."""
    pending: Iterator[str] = iter(tokens)
    latencies: list[int] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for token in pending:  # next() never awaits: no race
            began = perf_counter_ns()
            try:
                await call(token)
            except Exception:
                failures += 1
            latencies.append(perf_counter_ns() - began)

    cpu, began = thread_time_ns(), perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = perf_counter() - began
    cpu_us = (thread_time_ns() - cpu) / 1000 / len(tokens)
    latencies.sort()
    return Run(
        len(tokens) / wall,
        _percentile(latencies, 0.50) / 1e6,
        _percentile(latencies, 0.99) / 1e6,
        cpu_us,
        failures,
    )


async def _async_contenders(
    server: FastAS, stack: list[Callable[[], Awaitable[None]]]
) -> dict[str, Callable[[str], Awaitable[object]]]:
    import aiohttp

    url = server.introspection_endpoint
    headers = _headers(server)
    session = aiohttp.ClientSession()
    stack.append(session.close)

    async def bare_aiohttp(token: str) -> object:
        async with session.post(url, data=_form(token), headers=headers) as response:
            document = await response.json()
        _check(document)
        return document

    def httpx_call(client: httpx.AsyncClient) -> Callable[[str], Awaitable[object]]:
        async def call(token: str) -> object:
            response = await client.post(url, content=_form(token), headers=headers)
            document = response.json()
            _check(document)
            return document

        return call

    plain = httpx.AsyncClient()
    stack.append(plain.aclose)
    eight = asyncio.Semaphore(8)
    plain_call = httpx_call(plain)

    async def bounded(token: str) -> object:
        async with eight:
            return await plain_call(token)

    own = guard(server)
    stack.append(own.aclose)
    theirs_client = httpx.AsyncClient()
    stack.append(theirs_client.aclose)
    theirs = _guard_with(server, async_http_client=theirs_client)

    async def tokenguard_own(token: str) -> object:
        return await own.avalidate(token, POLICY)

    async def tokenguard_httpx(token: str) -> object:
        return await theirs.avalidate(token, POLICY)

    shell, auth = own._async, own.config.issuers[0].client_auth
    assert auth is not None

    async def transport_alone(token: str) -> object:
        request = build_request(url, token, auth, issuer=server.issuer, max_bytes=65536)
        outcome = await shell.perform(request)
        if not isinstance(outcome, HttpResponse) or outcome.status != 200:
            raise AssertionError("introspection failed")
        return outcome

    contenders: dict[str, Callable[[str], Awaitable[object]]] = {
        BARE_AIOHTTP: bare_aiohttp,
        TG_OWN: tokenguard_own,
        TG_TRANSPORT: transport_alone,
    }
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        from httpx_aiohttp import AiohttpTransport

        over = httpx.AsyncClient(transport=AiohttpTransport())
        stack.append(over.aclose)
        theirs_over_client = httpx.AsyncClient(transport=AiohttpTransport())
        stack.append(theirs_over_client.aclose)
        theirs_over = _guard_with(server, async_http_client=theirs_over_client)

        async def tokenguard_httpx_aiohttp(token: str) -> object:
            return await theirs_over.avalidate(token, POLICY)

        contenders[TG_HTTPX_AIOHTTP] = tokenguard_httpx_aiohttp
        contenders[BARE_HTTPX_AIOHTTP] = httpx_call(over)
    contenders[TG_HTTPX] = tokenguard_httpx
    contenders[BARE_HTTPX] = plain_call
    contenders[BARE_HTTPX_8] = bounded
    return contenders


def _guard_with(server: FastAS, **clients: Any) -> TokenGuard:
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                introspection_endpoint=server.introspection_endpoint,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name=POLICY, audience=AUDIENCE, required_scopes=[REQUIRED_SCOPE])],
        **clients,
    )


@dataclass
class AsyncResults:
    runs: dict[str, list[Run]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # per repeat, to bare aiohttp
    requests: int = 0
    expected: int = 0


async def _async_runs(server: FastAS, budget: Budget, tokens: int, repeats: int) -> AsyncResults:
    stack: list[Callable[[], Awaitable[None]]] = []
    results = AsyncResults()
    try:
        contenders = await _async_contenders(server, stack)
        names = list(contenders)
        before = server.request_count()
        for repeat in range(repeats):
            shift = repeat % len(names)
            this_round: dict[str, Run] = {}
            for name in (*names[shift:], *names[:shift]):
                call = contenders[name]
                # httpx's own transport is ~10x slower: fewer tokens, same concurrency.
                count = tokens // 4 if name in (TG_HTTPX, BARE_HTTPX) else tokens
                warm = await _concurrently(
                    call, server.opaque_tokens(budget.concurrency * 2), budget.concurrency
                )
                run = await _concurrently(call, server.opaque_tokens(count), budget.concurrency)
                run.failures += warm.failures
                this_round[name] = run
                results.runs.setdefault(name, []).append(run)
                results.expected += count + budget.concurrency * 2
            base = this_round[BARE_AIOHTTP].per_second
            for name, run in this_round.items():
                results.ratios.setdefault(name, []).append(run.per_second / base)
        results.requests = server.request_count() - before
    finally:
        for close in reversed(stack):
            await close()
    return results


def async_table(server: FastAS, budget: Budget) -> Table:
    tokens = 400 if budget.quick else 3000
    repeats = 1 if budget.quick else 5
    results = asyncio.run(_async_runs(server, budget, tokens, repeats))
    table = Table(
        f"Introspection, async, {budget.concurrency} concurrent tasks: throughput",
        ("", "validations/s", "× bare aiohttp", "p50 ms", "p99 ms", "client CPU µs", "failed"),
    )
    for name, runs in results.runs.items():
        chosen = sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]
        table.rows.append(
            (
                name,
                f"{chosen.per_second:,.0f}",
                f"×{statistics.median(results.ratios[name]):.2f}",
                f"{chosen.p50_ms:.1f}",
                f"{chosen.p99_ms:.1f}",
                us(chosen.cpu_us),
                f"{sum(r.failures for r in runs):,}",
            )
        )
    table.notes.append(
        f"{tokens:,} new tokens per run ({tokens // 4:,} for the two rows on httpx's own "
        f"transport, ~10x slower), each after a warm-up of {2 * budget.concurrency}; "
        f"{repeats} run(s) per row, rows interleaved; the row shows the median run, and "
        "'× bare aiohttp' is the median over runs of the throughput ratio to the bare "
        "aiohttp run of the same round"
    )
    table.notes.append(
        f"introspection requests: {results.requests:,} (expected {results.expected:,}); "
        "'failed': errors in all runs, warm-ups included"
    )
    table.notes.append(
        "client CPU: CPU time of the event-loop thread per validation (time.thread_time_ns); "
        "the server runs in another process. tokenguard rows do the whole validation "
        "(request building, single-flight, the per-issuer cap, response checks, TokenInfo); "
        "bare rows POST a pre-encoded form and parse the JSON answer"
    )
    return table


# -- sync: one thread, one request at a time -------------------------------------------


@dataclass
class SyncTiming:
    latencies: list[int] = field(default_factory=list)
    per_round: list[float] = field(default_factory=list)  # calls/s in each round
    cpu_ns: int = 0


def _sync_contenders(server: FastAS, closers: list[Callable[[], None]]) -> dict[str, Any]:
    parts = urlsplit(server.introspection_endpoint)
    headers = _headers(server)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port)
    closers.append(connection.close)

    def bare_http_client(token: str) -> object:
        connection.request("POST", parts.path, body=_form(token), headers=headers)
        document = json.loads(connection.getresponse().read())
        _check(document)
        return document

    own = guard(server)
    closers.append(own.close)
    client = httpx.Client()
    closers.append(client.close)
    theirs_client = httpx.Client()
    closers.append(theirs_client.close)
    theirs = _guard_with(server, http_client=theirs_client)

    def bare_httpx(token: str) -> object:
        document = client.post(
            server.introspection_endpoint, content=_form(token), headers=headers
        ).json()
        _check(document)
        return document

    auth = own.config.issuers[0].client_auth
    assert auth is not None

    def transport_alone(token: str) -> object:
        request = build_request(
            server.introspection_endpoint, token, auth, issuer=server.issuer, max_bytes=65536
        )
        outcome = own._sync.perform(request)
        if not isinstance(outcome, HttpResponse) or outcome.status != 200:
            raise AssertionError("introspection failed")
        return outcome

    contenders: dict[str, Any] = {
        BARE_HTTP_CLIENT: bare_http_client,
        TG_OWN: lambda token: own.validate(token, POLICY),
        TG_TRANSPORT: transport_alone,
    }
    if importlib.util.find_spec("urllib3") is not None:
        import urllib3

        pool = urllib3.PoolManager()
        closers.append(pool.clear)

        def bare_urllib3(token: str) -> object:
            response = pool.request(
                "POST", server.introspection_endpoint, body=_form(token), headers=headers
            )
            document = json.loads(response.data)
            _check(document)
            return document

        contenders[BARE_URLLIB3] = bare_urllib3
    contenders[TG_HTTPX] = lambda token: theirs.validate(token, POLICY)
    contenders[BARE_HTTPX] = bare_httpx
    seen = server.opaque_tokens(1)[0]
    own.validate(seen, POLICY)
    contenders[TG_CACHED] = lambda _token: own.validate(seen, POLICY)
    return contenders


def sync_table(server: FastAS, budget: Budget) -> Table:
    per_round = 60 if budget.quick else 300
    rounds = 2 if budget.quick else 10
    closers: list[Callable[[], None]] = []
    before = server.request_count()
    try:
        contenders = _sync_contenders(server, closers)
        names = list(contenders)
        timings = {name: SyncTiming() for name in names}
        for call in contenders.values():
            for token in server.opaque_tokens(50):
                call(token)
        for number in range(rounds):
            shift = number % len(names)
            for name in (*names[shift:], *names[:shift]):
                call, timing = contenders[name], timings[name]
                tokens = server.opaque_tokens(per_round)
                cpu, began = thread_time_ns(), perf_counter_ns()
                for token in tokens:
                    start = perf_counter_ns()
                    call(token)
                    timing.latencies.append(perf_counter_ns() - start)
                wall = perf_counter_ns() - began
                timing.cpu_ns += thread_time_ns() - cpu
                timing.per_round.append(per_round / (wall / 1e9))
        requests = server.request_count() - before
    finally:
        for close in closers:
            close()
    table = Table(
        "Introspection, sync, one thread: throughput",
        ("", "validations/s", "× bare http.client", "p50 µs", "p99 µs", "client CPU µs"),
    )
    base = timings[BARE_HTTP_CLIENT].per_round
    for name, timing in timings.items():
        ratios = [mine / theirs for mine, theirs in zip(timing.per_round, base, strict=True)]
        latencies = sorted(timing.latencies)
        table.rows.append(
            (
                name,
                f"{statistics.median(timing.per_round):,.0f}",
                f"×{statistics.median(ratios):.2f}",
                us(_percentile(latencies, 0.5) / 1000),
                us(_percentile(latencies, 0.99) / 1000),
                us(timing.cpu_ns / len(latencies) / 1000),
            )
        )
    table.notes.append(
        f"{rounds} interleaved rounds of {per_round} new tokens per row (after 50 to warm "
        "up); validations/s and the ratio are medians over rounds (each ratio taken within "
        f"its round); introspection requests: {requests:,}"
    )
    table.notes.append(
        "client CPU: CPU time of the calling thread per validation; the server runs in "
        "another process. The caller's-httpx-client row runs each exchange on a worker "
        "thread (httpx bounds each read, not a whole exchange): its CPU time is not all "
        "in this thread"
    )
    return table


# -- a flood of random opaque tokens ----------------------------------------------------


@dataclass
class FloodRow:
    as_per_second: float
    as_peak: int
    valid_served: int
    valid_refused: int
    valid_p50_ms: float
    valid_p99_ms: float
    cached_p99_ms: float
    flood_inactive: int
    flood_refused: int


async def _flood(
    server: FastAS, tokenguard: TokenGuard, *, attackers: int, seconds: float
) -> FloodRow:
    stop = False
    valid_latencies: list[int] = []
    cached_latencies: list[int] = []
    counts = {"served": 0, "refused": 0, "inactive": 0, "flood_refused": 0}
    seen = server.opaque_tokens(1)[0]
    await tokenguard.avalidate(seen, POLICY)

    async def attacker() -> None:
        while not stop:
            try:
                await tokenguard.avalidate(random_token(), POLICY)
            except InactiveToken:
                counts["inactive"] += 1
            except ValidationUnavailable:
                counts["flood_refused"] += 1

    async def user() -> None:
        while not stop:
            token = server.opaque_tokens(1)[0]
            began = perf_counter_ns()
            try:
                await tokenguard.avalidate(token, POLICY)
            except ValidationUnavailable:
                counts["refused"] += 1
            else:
                counts["served"] += 1
                valid_latencies.append(perf_counter_ns() - began)

    async def returning_user() -> None:
        while not stop:
            began = perf_counter_ns()
            await tokenguard.avalidate(seen, POLICY)
            cached_latencies.append(perf_counter_ns() - began)
            await asyncio.sleep(0.005)

    server.control(reset=1)
    tasks = [asyncio.ensure_future(attacker()) for _ in range(attackers)]
    tasks += [asyncio.ensure_future(user()) for _ in range(8)]
    tasks.append(asyncio.ensure_future(returning_user()))
    began = perf_counter()
    await asyncio.sleep(seconds)
    stats = server.control()
    elapsed = perf_counter() - began
    stop = True
    await asyncio.gather(*tasks)
    valid_latencies.sort()
    cached_latencies.sort()
    return FloodRow(
        as_per_second=stats["requests"] / elapsed,
        as_peak=stats["peak"],
        valid_served=counts["served"],
        valid_refused=counts["refused"],
        valid_p50_ms=_percentile(valid_latencies, 0.5) / 1e6 if valid_latencies else 0.0,
        valid_p99_ms=_percentile(valid_latencies, 0.99) / 1e6 if valid_latencies else 0.0,
        cached_p99_ms=_percentile(cached_latencies, 0.99) / 1e6,
        flood_inactive=counts["inactive"],
        flood_refused=counts["flood_refused"],
    )


FLOOD_DELAY = 0.05
ATTACKERS = 512


def flood_table(server: FastAS, budget: Budget) -> Table:
    seconds = 1.0 if budget.quick else 4.0
    default_cap = Settings().max_concurrent_introspections
    cases = [
        ("no flood (8 users only)", {}, 0),
        (f"flood, cap {default_cap} per issuer (default)", {}, ATTACKERS),
        (
            "flood, no cap (100,000: as before)",
            {"max_concurrent_introspections": 100_000},
            ATTACKERS,
        ),
    ]
    table = Table(
        f"Flood: {ATTACKERS} tasks sending random opaque tokens, AS answering in "
        f"{FLOOD_DELAY * 1000:.0f} ms",
        (
            "",
            "AS requests/s",
            "AS peak in flight",
            "new valid tokens: served",
            "refused (503)",
            "p50 ms",
            "p99 ms",
            "known token p99 ms",
            "flood: 401",
            "flood: 503",
        ),
    )
    server.control(delay=FLOOD_DELAY)
    try:
        for name, settings, attackers in cases:

            async def one(
                settings: dict[str, Any] = settings, attackers: int = attackers
            ) -> FloodRow:
                tokenguard = guard(server, **settings)
                try:
                    return await _flood(server, tokenguard, attackers=attackers, seconds=seconds)
                finally:
                    await tokenguard.aclose()

            row = asyncio.run(one())
            table.rows.append(
                (
                    name,
                    f"{row.as_per_second:,.0f}",
                    f"{row.as_peak:,}",
                    f"{row.valid_served:,}",
                    f"{row.valid_refused:,}",
                    f"{row.valid_p50_ms:.0f}",
                    f"{row.valid_p99_ms:.0f}",
                    f"{row.cached_p99_ms:.1f}",
                    f"{row.flood_inactive:,}",
                    f"{row.flood_refused:,}",
                )
            )
    finally:
        server.control(delay=0)
    table.notes.append(
        f"{seconds:.0f} s per row, async, one event loop; 8 user tasks validate new valid "
        "tokens one after another; one returning user validates the same (cached) token "
        "every 5 ms; the AS answers every introspection after "
        f"{FLOOD_DELAY * 1000:.0f} ms (a remote authorization server), and counts the "
        "requests it receives and the most it has in progress at once"
    )
    table.notes.append(
        "with the cap, at most that many introspections per issuer are in flight; one more "
        f"waits up to introspection_queue_wait ({Settings().introspection_queue_wait} s, "
        "newest first) and is refused with 503 + Retry-After. New valid tokens compete with "
        "the flood for the same slots (nothing tells a valid opaque token from a random one "
        "before the AS answers); tokens already validated are answered from the caches"
    )
    return table


def run(budget: Budget) -> list[Table]:
    with fast_as() as server:
        return [
            sync_table(server, budget),
            async_table(server, budget),
            flood_table(server, budget),
        ]
