"""Fleet measurements (issue 9): real processes, a real Redis, the embedded AS.

    python benchmarks/fleet_bench.py            # the issue's sizes (a few minutes)
    python benchmarks/fleet_bench.py --quick    # smoke sizes (the suite runs this)

Redis: TOKENGUARD_TEST_REDIS_URL or redis://127.0.0.1:6379/0 (keys under a fresh prefix,
deleted afterwards); the outage section starts its own redis-server on a free port.

1. N processes validate the same new opaque tokens at once: introspection calls at the AS
   (without the fleet every process introspects every token: N x tokens).
2. revoke / revoke_subject seen by N processes: delay from the call to the first refusal
   in each process (p50, p99, max).
3. Redis stopped in the middle of a load run and restarted: failed validations, and a
   revocation made during the outage enforced afterwards.
4. A local miss answered from Redis against one answered by the AS (one process).
5. A DPoP-bound JWT seen before, with a new proof each time: its jti claimed across the
   fleet (one SET NX) against the local replay cache alone (one process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet._procs import Worker, job_for  # noqa: E402
from tests.fleet.conftest import SECRET, RedisServer  # noqa: E402

from tokenguard import ClientSecretBasic, DPoPProof, Issuer, Policy, TokenGuard  # noqa: E402
from tokenguard.redis import RedisFleet  # noqa: E402
from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer, DPoPKey  # noqa: E402

#: Each Redis call's bound in sections 1 and 2. The default (0.25 s) is right for a
#: production host; on a 2-CPU machine running 8 workers (and other builds) a call can
#: wait longer for a CPU, which would measure the machine, not the design.
REDIS_TIMEOUT = 1.0


def guard(server: AuthServer, url: str | None, prefix: str) -> TokenGuard:
    fleet = RedisFleet(url, SECRET, prefix=prefix, timeout=REDIS_TIMEOUT) if url else None
    return TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                client_auth=ClientSecretBasic(server.client_id, server.client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[Policy(name="p", audience=DEFAULT_AUDIENCE)],
        fleet=fleet,
    )


def start(workers: list[Worker]) -> None:
    for worker in workers:
        line = worker.line()
        assert line == "ready", line


def shared_introspections(server: AuthServer, url: str, processes: int, tokens: int) -> None:
    prefix = f"tgbench-{uuid.uuid4().hex[:8]}"
    batch = [server.issue_opaque() for _ in range(tokens)]
    server.set_delay(0.02, "introspection")  # a real AS answers in milliseconds, not µs
    server.reset_counts()
    workers = [
        Worker(job_for(server, url, prefix, SECRET, do="validate", tokens=batch, concurrency=16,
                       fleet={"timeout": REDIS_TIMEOUT}, **{"async": i % 2 == 1}))
        for i in range(processes)
    ]  # fmt: skip
    try:
        start(workers)
        started = time.perf_counter()
        for worker in workers:
            worker.send()
        results = [worker.result() for worker in workers]
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.close()
        server.set_delay(0, "introspection")
    ok = sum(r["outcomes"].get("ok", 0) for r in results)
    failed = sum(v for r in results for k, v in r["outcomes"].items() if k != "ok")
    calls = server.request_count("introspection")
    hits = sum(r["counters"]["shared_hits"] for r in results)
    waited = sum(r["counters"]["flights_waited"] for r in results)
    print(f"\n## 1. {processes} processes x {tokens:,} new opaque tokens, at once")
    print(f"validations ok / failed        {ok:,} / {failed}")
    print(f"introspection calls at the AS  {calls:,}  (without the fleet: {processes * tokens:,})")
    print(f"answers served from Redis      {hits:,}; waits on another process's flight {waited:,}")
    totals: dict[str, int] = {}
    for r in results:
        for name, value in r["counters"].items():
            totals[name] = totals.get(name, 0) + value
    errors = {k: v for r in results for k, v in r["outcomes"].items() if k != "ok"}
    print(f"fleet counters (all processes) {totals}")
    if errors:
        print(f"failed validations by error    {errors}")
    print(f"wall time                      {elapsed:.2f} s")
    cleanup(url, prefix)


def revocation_latency(server: AuthServer, url: str, processes: int, count: int) -> None:
    prefix = f"tgbench-{uuid.uuid4().hex[:8]}"
    now = time.time()
    subjects = [f"user-{i}" for i in range(count)]
    tokens = [server.issue_jwt(subject=s, issued_at=now - 5) for s in subjects]
    workers = [
        Worker(
            job_for(
                server,
                url,
                prefix,
                SECRET,
                do="watch",
                tokens=tokens,
                fleet={"timeout": REDIS_TIMEOUT},
            )
        )
        for _ in range(processes)
    ]
    admin = guard(server, url, prefix)
    called: list[float] = []
    try:
        start(workers)
        for index, (subject, token) in enumerate(zip(subjects, tokens, strict=True)):
            time.sleep(0.02)
            called.append(time.time())
            if index % 2:
                admin.revoke_subject(subject)
            else:
                admin.revoke(token)
        seen = [worker.result()["seen"] for worker in workers]
    finally:
        admin.close()
        for worker in workers:
            worker.close()
    delays = sorted((at - called[i]) * 1000 for times in seen for i, at in enumerate(times))
    p99 = delays[max(int(len(delays) * 0.99) - 1, 0)]
    print(f"\n## 2. {count} revocations (revoke, revoke_subject) seen by {processes} processes")
    print(f"delay from the call to the first refusal: p50 {statistics.median(delays):.1f} ms, "
          f"p99 {p99:.1f} ms, max {delays[-1]:.1f} ms  ({len(delays)} observations)")  # fmt: skip
    cleanup(url, prefix)


def outage(server: AuthServer, processes: int, tokens: int, pause: float) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        private = RedisServer(Path(workdir))
        private.start()
        batch = [server.issue_opaque() for _ in range(tokens)]
        victim = server.issue_jwt(subject="victim", issued_at=time.time() - 5)
        workers = [
            Worker(job_for(server, private.url, "outage", SECRET, do="load", tokens=batch,
                           pace=0.005, check=[victim], seconds=120))
            for _ in range(processes)
        ]  # fmt: skip
        admin = guard(server, private.url, "outage")
        try:
            start(workers)
            time.sleep(pause)
            private.stop()
            down = time.perf_counter()
            admin.revoke_subject("victim")
            time.sleep(pause * 1.5)
            private.start()
            back = time.perf_counter()
            deadline = time.monotonic() + 15
            while admin.fleet is not None and admin.fleet.pending and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(pause)
            for worker in workers:
                worker.send("stop")
            results = [worker.result() for worker in workers]
            checks = [worker.result()["check"] for worker in workers]
        finally:
            admin.close()
            for worker in workers:
                worker.close()
            private.stop()
    ok = sum(r["outcomes"].get("ok", 0) for r in results)
    failed = sum(v for r in results for k, v in r["outcomes"].items() if k != "ok")
    enforced = sum(c == ["InactiveToken"] for c in checks)
    print(f"\n## 3. Redis stopped for {back - down:.1f} s in a load run of {processes} processes")
    print(f"validations ok / failed        {ok:,} / {failed}")
    print(
        f"revocation made during the outage enforced after it: {enforced} of {processes} processes"
    )


def miss_cost(server: AuthServer, url: str, tokens: int) -> None:
    """Interleaved, one token at a time: each new token is validated by a guard whose
    fleet already has its answer, and by one without a fleet (asking the AS); medians,
    so a load spike on the shared machine moves both or neither."""
    prefix = f"tgbench-{uuid.uuid4().hex[:8]}"
    filler = guard(server, url, prefix)
    try:
        batch = [server.issue_opaque() for _ in range(tokens)]
        for token in batch:
            filler.validate(token)  # the answers are in Redis now
        sync = _paired(server, url, prefix, batch, use_async=False)
        more = [server.issue_opaque() for _ in range(tokens)]
        for token in more:
            filler.validate(token)
        aio = _paired(server, url, prefix, more, use_async=True)
    finally:
        filler.close()
    print(f"\n## 4. A local miss: {tokens} new opaque tokens, one at a time, interleaved")
    for kind, (redis_us, as_us) in (("sync ", sync), ("async", aio)):
        print(f"{kind} answered by Redis      median {redis_us:7.0f} µs")
        print(
            f"{kind} answered by the AS     median {as_us:7.0f} µs   ratio {as_us / redis_us:.2f}x"
        )
    print("(loopback AS answering in about a millisecond; an AS across a network, with TLS")
    print(" and its own database lookup, makes the gap wider)")
    cleanup(url, prefix)


def _paired(
    server: AuthServer, url: str, prefix: str, tokens: list[str], *, use_async: bool
) -> tuple[float, float]:
    fleet, alone = guard(server, url, prefix), guard(server, None, prefix)
    warm = server.issue_opaque()
    via_redis: list[float] = []
    via_as: list[float] = []

    async def one(target: TokenGuard, token: str) -> float:
        started = time.perf_counter()
        await target.avalidate(token)
        return time.perf_counter() - started

    def sync_one(target: TokenGuard, token: str) -> float:
        started = time.perf_counter()
        target.validate(token)
        return time.perf_counter() - started

    async def run_async() -> None:
        await fleet.avalidate(warm)
        await alone.avalidate(server.issue_opaque())
        for token in tokens:
            via_redis.append(await one(fleet, token))
            via_as.append(await one(alone, token))
        await fleet.aclose()
        await alone.aclose()

    try:
        if use_async:
            asyncio.run(run_async())
        else:
            fleet.validate(warm)
            alone.validate(server.issue_opaque())
            for token in tokens:
                via_redis.append(sync_one(fleet, token))
                via_as.append(sync_one(alone, token))
    finally:
        fleet.close()
        alone.close()
    return statistics.median(via_redis) * 1e6, statistics.median(via_as) * 1e6


DPOP_URL = "https://api.example/orders"


def dpop_repeat_cost(server: AuthServer, url: str, requests: int) -> None:
    """Interleaved, one request at a time: the same DPoP-bound JWT (in both guards'
    verified-token cache) with a new proof per request, through a guard in the fleet
    (local replay cache, then SET NX in Redis) and one without a fleet; medians."""
    prefix = f"tgbench-{uuid.uuid4().hex[:8]}"
    key = DPoPKey()
    token = server.issue_jwt(lifetime=3600, claims={"cnf": key.cnf})
    print(f"\n## 5. A DPoP-bound JWT seen before, {requests} new proofs, interleaved")
    for kind, use_async in (("sync ", False), ("async", True)):
        fleet_us, alone_us, claimed = _dpop_paired(
            server, url, prefix, key, token, requests, use_async
        )
        print(f"{kind} claimed in Redis too   median {fleet_us:7.0f} µs   ({claimed} jtis claimed)")
        print(
            f"{kind} local replay cache     median {alone_us:7.0f} µs   "
            f"ratio {fleet_us / alone_us:.2f}x, +{fleet_us - alone_us:.0f} µs"
        )
    cleanup(url, prefix)


def _dpop_paired(
    server: AuthServer,
    url: str,
    prefix: str,
    key: DPoPKey,
    token: str,
    requests: int,
    use_async: bool,
) -> tuple[float, float, int]:
    fleet, alone = guard(server, url, prefix), guard(server, None, prefix)
    pairs = ((fleet, "fleet"), (alone, "alone"))
    proofs = [key.proof("GET", DPOP_URL, access_token=token) for _ in range(2 * requests + 2)]
    times: dict[str, list[float]] = {"fleet": [], "alone": []}

    def request() -> DPoPProof:
        return DPoPProof(proofs.pop(), "GET", DPOP_URL, "DPoP")

    async def run_async() -> None:
        for target, _ in pairs:
            await target.avalidate(token, dpop=request())  # warm
        while proofs:
            for target, name in pairs:
                started = time.perf_counter()
                await target.avalidate(token, dpop=request())
                times[name].append(time.perf_counter() - started)
        await fleet.aclose()
        await alone.aclose()

    try:
        if use_async:
            asyncio.run(run_async())
        else:
            for target, _ in pairs:
                target.validate(token, dpop=request())  # warm
            while proofs:
                for target, name in pairs:
                    started = time.perf_counter()
                    target.validate(token, dpop=request())
                    times[name].append(time.perf_counter() - started)
        assert fleet.fleet is not None
        claimed = fleet.fleet.counters.proofs_claimed
    finally:
        fleet.close()
        alone.close()
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    return medians["fleet"], medians["alone"], claimed


def cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    args = parser.parse_args()
    url = os.environ.get("TOKENGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    processes = 2 if args.quick else 8
    version = redis.Redis.from_url(url).info()["redis_version"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# tokenguard fleet benchmark ({'quick' if args.quick else 'full'})")
    print(f"{os.cpu_count()} CPUs, load average {load}, Redis {version}")
    with AuthServer() as server:
        shared_introspections(server, url, processes, 40 if args.quick else 1000)
        revocation_latency(server, url, processes, 6 if args.quick else 100)
        outage(
            server,
            processes if args.quick else 4,
            100 if args.quick else 400,
            0.8 if args.quick else 2,
        )
        miss_cost(server, url, 30 if args.quick else 300)
        dpop_repeat_cost(server, url, 30 if args.quick else 1000)


if __name__ == "__main__":
    main()
