"""The sync shell: drives validation flows on the calling thread, with thread single-flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.exchange import Fetch, HttpOutcome, HttpRequest, gave_up
from ..core.needs import Joint, Pause, Store
from ..core.observe import Observer
from .limits import Capacities, GiveUp
from .store import NO_STORE, SyncStoreDriver
from .transport import SyncTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["SyncShell", "ThreadFlights"]

T = TypeVar("T")


class _Flight:
    __slots__ = ("deadline", "done", "error", "value")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ThreadFlights:
    """Single-flight across threads: concurrent calls with one key run ``fn`` once and
    all get its result. The lock is held only to join or leave, never during ``fn``.

    A flight has a deadline (that of the request it makes): a thread that joins it waits
    until then at most, and then gets ``GiveUp("overdue")``, whatever the leader is doing.
    A flight without one (``None``: a sub-flow of several needs, each bounded) is waited
    for to its end.
    """

    def __init__(self, on_join: Callable[[Hashable], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self._on_join = on_join  # told the key of each flight a caller joins

    def run(self, key: Hashable, deadline: float | None, fn: Callable[[float | None], T]) -> T:
        """``fn(deadline)`` once for all concurrent callers with ``key``."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(deadline)
        if not leader:
            if self._on_join is not None:
                self._on_join(key)
            ends = flight.deadline
            timeout = None if ends is None else max(ends - time.monotonic(), 0.0)
            if not flight.done.wait(timeout) and not flight.done.is_set():
                raise GiveUp("overdue")
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[no-any-return]
        try:
            flight.value = fn(flight.deadline)
            return flight.value  # type: ignore[no-any-return]
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


class SyncShell:
    """Performs what a flow asks for, once per key, and sends the results back.

    HTTP goes through tokenguard's own pooled ``http.client`` transport, or through the
    caller's ``httpx.Client``; either way every exchange ends by ``timeout`` seconds
    after it starts, and so does every wait for it. Introspections take a slot of their
    issuer's capacity first (:mod:`.limits`).
    """

    def __init__(
        self,
        timeout: float,
        client: httpx.Client | None = None,
        store: SyncStoreDriver | None = None,
        *,
        capacities: Capacities | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._timeout = timeout
        self._store = store
        self._client = client
        self._transport: SyncTransport | None = None  # made on first use
        self._lock = threading.Lock()
        self._capacities = capacities
        self._observer = observer or Observer()
        self._flights = ThreadFlights(self._observer.joined)

    def run(self, flow: Generator[Any, Any, T]) -> T:
        """Drive ``flow`` to its end and return its value (or let its error out)."""
        try:
            need = next(flow)
            while True:
                try:
                    result = self._fulfil(need) if type(need) is Fetch else self._other(need)
                except GiveUp as stop:
                    self._observer.gave_up(getattr(need, "key", None), stop.why)
                    need = flow.throw(gave_up(stop.why))
                else:
                    need = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _other(self, need: Any) -> Any:
        """The needs that are not HTTP (:mod:`tokenguard.core.needs`)."""
        if type(need) is Store:
            store = self._store
            return need.complete(store.perform(need.ops) if store else NO_STORE)
        if type(need) is Joint:
            return self._flights.run(need.key, None, lambda _d: self.run(need.start()))
        if type(need) is Pause:
            time.sleep(need.seconds)
            return None
        raise TypeError(f"unknown need {type(need).__name__}")

    def _fulfil(self, need: Fetch) -> Any:
        deadline = time.monotonic() + self._timeout
        return self._flights.run(need.key, deadline, lambda d: self._fetch(need, deadline))

    def _fetch(self, fetch: Fetch, deadline: float) -> Any:
        capacity = None
        if fetch.budget is not None and self._capacities is not None:
            capacity = self._capacities.get(fetch.budget)
            wait = min(deadline, time.monotonic() + self._capacities.wait)
            if not capacity.acquire(wait):
                raise GiveUp("busy")
        try:
            request = fetch.build()
            with self._observer.exchange(fetch.key, request) as record:
                outcome = self.perform(request, deadline)
                record(outcome)
        finally:
            if capacity is not None:
                capacity.release()
        return fetch.complete(outcome)

    def perform(self, request: HttpRequest, deadline: float | None = None) -> HttpOutcome:
        """One bounded exchange: no redirects, identity encoding, size cap, and an end by
        ``deadline`` (default: the configured timeout from now)."""
        if deadline is None:
            deadline = time.monotonic() + self._timeout
        transport = self._transport or self._make_transport()
        return transport.perform(request, deadline)

    def _make_transport(self) -> SyncTransport:
        # Imported on first use: a guard that never goes to the network loads neither.
        with self._lock:
            if self._transport is None:
                if self._client is None:
                    from .stdlib_client import StdlibClient

                    self._transport = StdlibClient()
                else:
                    from .httpx_client import HttpxSyncClient

                    self._transport = HttpxSyncClient(self._client, self._timeout)
            return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
