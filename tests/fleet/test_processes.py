"""Real processes, each with its own guard, in one fleet (smoke sizes; the benchmark
runs the issue's sizes: ``benchmarks/fleet_bench.py``)."""

from __future__ import annotations

import statistics
import time

from tokenguard.testing import AuthServer

from ._procs import Worker, job_for
from .conftest import SECRET, fleet_guard

PROCESSES = 4


def test_processes_share_introspections(
    auth_server: AuthServer, redis_url: str, prefix: str
) -> None:
    tokens = [auth_server.issue_opaque(scopes=["orders:read"]) for _ in range(60)]
    auth_server.set_delay(0.02, "introspection")  # a real AS takes a while to answer
    workers = [
        Worker(job_for(auth_server, redis_url, prefix, SECRET, do="validate", tokens=tokens,
                       concurrency=8, **{"async": index % 2 == 1}))
        for index in range(PROCESSES)
    ]  # fmt: skip
    try:
        for worker in workers:
            assert worker.line() == "ready"
        for worker in workers:
            worker.send()
        results = [worker.result() for worker in workers]
    finally:
        for worker in workers:
            worker.close()
    assert all(r["outcomes"] == {"ok": len(tokens)} for r in results), results
    calls = auth_server.request_count("introspection")
    # Without the fleet: PROCESSES x 60 = 240. One per token, and a few more at most when
    # a lock holder is slow to write its answer back.
    assert calls <= len(tokens) * 1.05, calls
    assert sum(r["counters"]["shared_hits"] for r in results) >= len(tokens) * (PROCESSES - 1) * 0.9


def test_revocations_reach_every_process(
    auth_server: AuthServer, redis_url: str, prefix: str
) -> None:
    now = time.time()
    subjects = [f"user-{i}" for i in range(12)]
    tokens = [auth_server.issue_jwt(subject=s, issued_at=now - 5) for s in subjects]
    workers = [
        Worker(job_for(auth_server, redis_url, prefix, SECRET, do="watch", tokens=tokens))
        for _ in range(PROCESSES)
    ]
    admin = fleet_guard(auth_server, redis_url, prefix)
    called = []
    try:
        for worker in workers:
            assert worker.line() == "ready"
        for index, (subject, token) in enumerate(zip(subjects, tokens, strict=True)):
            time.sleep(0.03)
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
    delays = sorted(at - called[i] for times in seen for i, at in enumerate(times))
    p99 = delays[int(len(delays) * 0.99) - 1]
    median = statistics.median(delays)
    print(f"revocation seen by {PROCESSES} processes: median {median:.4f} s, p99 {p99:.4f} s")
    assert p99 < 0.5  # the benchmark holds it to 100 ms with 8 processes
