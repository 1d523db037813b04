"""The sync shell: drives validation flows with ``httpx.Client`` and thread single-flight."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Generator, Hashable
from typing import Any, TypeVar

import httpx

from ..core.exchange import Fetch, HttpFailure, HttpOutcome, HttpRequest, ResponseReader
from ..core.needs import Joint, Pause, Store
from .store import NO_STORE, SyncStoreDriver
from .transport import build_request, client_options, failure_reason

__all__ = ["SyncShell"]

T = TypeVar("T")


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ThreadFlights:
    """Single-flight across threads: concurrent calls with one key run ``fn`` once and
    all get its result. The lock is held only to join or leave, never during ``fn``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[no-any-return]
        try:
            flight.value = fn()
            return flight.value  # type: ignore[no-any-return]
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


class SyncShell:
    """Performs the HTTP a flow asks for, once per key, with a bounded ``httpx.Client``."""

    def __init__(
        self,
        timeout: float,
        client: httpx.Client | None = None,
        store: SyncStoreDriver | None = None,
    ) -> None:
        self._timeout = timeout
        self._store = store
        self._client = client
        self._owned = client is None
        self._lock = threading.Lock()
        self._flights = ThreadFlights()

    def _http(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(**client_options(self._timeout))
        return self._client

    def run(self, flow: Generator[Any, Any, T]) -> T:
        """Drive ``flow`` to its end and return its value (or let its error out)."""
        try:
            need = next(flow)
            while True:
                if type(need) is Fetch:
                    result = self._flights.run(need.key, functools.partial(self._fulfil, need))
                else:
                    result = self._other(need)
                need = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _other(self, need: Any) -> Any:
        """The needs that are not HTTP (:mod:`tokenguard.core.needs`)."""
        if type(need) is Store:
            store = self._store
            return need.complete(store.perform(need.ops) if store else NO_STORE)
        if type(need) is Joint:
            return self._flights.run(need.key, lambda: self.run(need.start()))
        if type(need) is Pause:
            time.sleep(need.seconds)
            return None
        raise TypeError(f"unknown need {type(need).__name__}")

    def _fulfil(self, fetch: Fetch) -> Any:
        return fetch.complete(self.perform(fetch.build()))

    def perform(self, request: HttpRequest) -> HttpOutcome:
        """One bounded request: no redirects, identity encoding, size and time caps."""
        client = self._http()
        deadline = time.monotonic() + self._timeout
        try:
            built = build_request(client, request, self._timeout, own_client=self._owned)
            response = client.send(built, stream=True, follow_redirects=False)
            try:
                reader = ResponseReader(request, response.status_code, response.headers, deadline)
                failure = reader.check_head()
                if failure is not None:
                    return failure
                for chunk in response.iter_raw():
                    failure = reader.feed(chunk, time.monotonic())
                    if failure is not None:
                        return failure
                return reader.response()
            finally:
                response.close()
        except httpx.HTTPError as error:
            return HttpFailure(failure_reason(error))

    def close(self) -> None:
        with self._lock:
            if self._owned and self._client is not None:
                self._client.close()
                self._client = None
