"""The async shell: drives validation flows with ``httpx.AsyncClient`` and task single-flight."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator, Hashable
from typing import Any, TypeVar

import httpx

from ..core.exchange import Fetch, HttpFailure, HttpOutcome, HttpRequest, ResponseReader
from ..core.needs import Joint, Pause, Store
from .store import NO_STORE, AsyncStoreDriver
from .transport import build_request, client_options, failure_reason

__all__ = ["AsyncShell"]

T = TypeVar("T")


class TaskFlights:
    """Single-flight across asyncio tasks: concurrent calls with one key share one task.

    Each caller awaits the task through ``asyncio.shield``, so a cancelled caller
    leaves the fetch running for the others.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}

    async def run(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = asyncio.get_running_loop()
        task = self._flights.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(start())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._leave(key, done))
        return await asyncio.shield(task)

    def _leave(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if all waiters left


class AsyncShell:
    """Performs the HTTP a flow asks for, once per key, with a bounded ``httpx.AsyncClient``."""

    def __init__(
        self,
        timeout: float,
        client: httpx.AsyncClient | None = None,
        store: AsyncStoreDriver | None = None,
    ) -> None:
        self._timeout = timeout
        self._store = store
        self._client = client
        self._owned = client is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flights = TaskFlights()

    def _http(self) -> httpx.AsyncClient:
        if not self._owned:
            assert self._client is not None
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A client's connections belong to the event loop that made them; a guard
            # used from another loop (asyncio.run per call, a loop per test) needs its
            # own. The old loop is usually closed already, its client unreachable.
            self._client = httpx.AsyncClient(**client_options(self._timeout))
            self._loop = loop
        return self._client

    async def run(self, flow: Generator[Any, Any, T]) -> T:
        """Drive ``flow`` to its end and return its value (or let its error out)."""
        try:
            need = next(flow)
            while True:
                if type(need) is Fetch:
                    result = await self._flights.run(
                        need.key, functools.partial(self._fulfil, need)
                    )
                else:
                    result = await self._other(need)
                need = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _other(self, need: Any) -> Any:
        """The needs that are not HTTP (:mod:`tokenguard.core.needs`)."""
        if type(need) is Store:
            store = self._store
            return need.complete(await store.perform(need.ops) if store else NO_STORE)
        if type(need) is Joint:
            return await self._flights.run(need.key, lambda: self.run(need.start()))
        if type(need) is Pause:
            await asyncio.sleep(need.seconds)
            return None
        raise TypeError(f"unknown need {type(need).__name__}")

    async def _fulfil(self, fetch: Fetch) -> Any:
        return fetch.complete(await self.perform(fetch.build()))

    async def perform(self, request: HttpRequest) -> HttpOutcome:
        """One bounded request: no redirects, identity encoding, size and time caps."""
        client = self._http()
        deadline = time.monotonic() + self._timeout
        try:
            built = build_request(client, request, self._timeout, own_client=self._owned)
            response = await client.send(built, stream=True, follow_redirects=False)
            try:
                reader = ResponseReader(request, response.status_code, response.headers, deadline)
                failure = reader.check_head()
                if failure is not None:
                    return failure
                async for chunk in response.aiter_raw():
                    failure = reader.feed(chunk, time.monotonic())
                    if failure is not None:
                        return failure
                return reader.response()
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            return HttpFailure(failure_reason(error))

    async def aclose(self) -> None:
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            if self._loop is asyncio.get_running_loop():
                await client.aclose()
            # A client of another (closed) loop cannot be closed from here: drop it.
