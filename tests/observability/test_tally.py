"""The counters a first-seen token makes take no lock, and stay exact under threads."""

from __future__ import annotations

import sys
import threading

from tokenguard.core.observe import Observer, Tally, Trace
from tokenguard.testing import AuthServer, guard_for


def test_a_tally_counts_every_add() -> None:
    tally = Tally()
    assert tally.value == 0
    for _ in range(5):
        tally.add()
    assert tally.value == 5


def test_lock_free_counts_stay_exact_when_threads_switch_constantly() -> None:
    observer = Observer()
    trace = Trace("api", "jws", "jwt", False)
    rounds, workers = 20_000, 4

    def work() -> None:
        for _ in range(rounds):
            observer.finished(trace, None)
            observer.lookup("verified", False)
            observer.lookup("jwks", True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    counts = observer.copy()
    total = rounds * workers
    assert counts.validations == {("api", "success", None, "jwt", False): total}
    assert counts.lookups == {("verified", False): total, ("jwks", True): total}


def test_cached_hits_stay_exact_when_threads_switch_constantly(auth_server: AuthServer) -> None:
    """The verified-cache hit, the one count of the hot path, loses none under threads."""
    guard = guard_for(auth_server)
    token = auth_server.issue_jwt()
    guard.validate(token)  # first seen: a miss, then cached
    rounds, workers = 5_000, 4

    def work() -> None:
        for _ in range(rounds):
            guard.validate(token)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert guard.stats().caches.verified.hits == rounds * workers
    guard.close()
