"""The async shell: drives validation flows as asyncio tasks, with task single-flight."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.exchange import Fetch, HttpOutcome, HttpRequest, gave_up
from ..core.needs import Joint, Pause, Store
from ..core.observe import Observer
from .limits import Capacities, GiveUp
from .store import NO_STORE, AsyncStoreDriver
from .transport import AsyncTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncShell", "Clock", "TaskFlights"]

T = TypeVar("T")


class Clock:
    """When a flight must end: set by the flight's task when it starts (a task may start
    a little after it is created, when the loop has other work queued), ``None`` for a
    flight with no deadline of its own."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline


class TaskFlights:
    """Single-flight across asyncio tasks: concurrent calls with one key share one task.

    Each caller awaits the task through ``asyncio.shield``, so a cancelled caller leaves
    the fetch running for the others. The task ends by its deadline (that of the request
    it makes, counted from when the task starts); a caller that joins it waits until that
    deadline at most, and then gets ``GiveUp("overdue")`` whatever the task is doing. A
    flight without one (a sub-flow of several needs, each bounded) is waited for to its
    end.
    """

    def __init__(self, on_join: Callable[[Hashable], None] | None = None) -> None:
        self._flights: dict[Hashable, tuple[asyncio.Task[Any], Clock]] = {}
        self._on_join = on_join  # told the key of each flight a caller joins

    async def run(
        self, key: Hashable, clock: Clock, start: Callable[[Clock], Coroutine[Any, Any, T]]
    ) -> T:
        """``start(clock)`` once for all concurrent callers with ``key``; ``clock`` holds
        the flight's deadline (provisional until the task starts and sets it)."""
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None or flight[0].get_loop() is not loop:
            task = loop.create_task(start(clock))
            self._flights[key] = (task, clock)
            task.add_done_callback(functools.partial(self._leave, key))
            # The task itself ends by the deadline: its starter needs no timer of its own.
            return await asyncio.shield(task)
        task, clock = flight
        if self._on_join is not None:
            self._on_join(key)
        while True:
            ends = clock.deadline
            try:
                async with asyncio.timeout_at(ends):
                    return await asyncio.shield(task)
            except TimeoutError:
                if task.done():  # it ended in time; this task was resumed after the deadline
                    return task.result()
                later = clock.deadline
                if later is not None and ends is not None and later > ends:
                    continue  # the task started after it was created: its deadline moved
                raise GiveUp("overdue") from None

    def _leave(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        flight = self._flights.get(key)
        if flight is not None and flight[0] is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if all waiters left


class AsyncShell:
    """Performs what a flow asks for, once per key, and sends the results back.

    HTTP goes through tokenguard's own aiohttp sessions (one per live event loop), or
    through the caller's ``httpx.AsyncClient``; either way every exchange ends by
    ``timeout`` seconds after it starts, and so does every wait for it. Introspections
    take a slot of their issuer's capacity first (:mod:`.limits`).
    """

    def __init__(
        self,
        timeout: float,
        client: httpx.AsyncClient | None = None,
        store: AsyncStoreDriver | None = None,
        *,
        capacities: Capacities | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._timeout = timeout
        self._store = store
        self._client = client
        self._transport: AsyncTransport | None = None  # made on first use
        self._capacities = capacities
        self._observer = observer or Observer()
        self._flights = TaskFlights(self._observer.joined)

    async def run(self, flow: Generator[Any, Any, T]) -> T:
        """Drive ``flow`` to its end and return its value (or let its error out)."""
        try:
            need = next(flow)
            while True:
                try:
                    if type(need) is Fetch:
                        result = await self._fulfil(need)
                    else:
                        result = await self._other(need)
                except GiveUp as stop:
                    self._observer.gave_up(getattr(need, "key", None), stop.why)
                    need = flow.throw(gave_up(stop.why))
                else:
                    need = flow.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _other(self, need: Any) -> Any:
        """The needs that are not HTTP (:mod:`tokenguard.core.needs`)."""
        if type(need) is Store:
            store = self._store
            return need.complete(await store.perform(need.ops) if store else NO_STORE)
        if type(need) is Joint:
            return await self._flights.run(need.key, Clock(None), lambda _c: self.run(need.start()))
        if type(need) is Pause:
            await asyncio.sleep(need.seconds)
            return None
        raise TypeError(f"unknown need {type(need).__name__}")

    async def _fulfil(self, need: Fetch) -> Any:
        clock = Clock(time.monotonic() + self._timeout)  # provisional: see _fetch
        return await self._flights.run(need.key, clock, functools.partial(self._fetch, need))

    async def _fetch(self, fetch: Fetch, clock: Clock) -> Any:
        # The exchange's time starts now, not when the flight was created: a loop with
        # many tasks queued may start this one a little later.
        deadline = clock.deadline = time.monotonic() + self._timeout
        capacity = None
        if fetch.budget is not None and self._capacities is not None:
            capacity = self._capacities.get(fetch.budget)
            wait = min(deadline, time.monotonic() + self._capacities.wait)
            if not await capacity.aacquire(wait):
                raise GiveUp("busy")
        try:
            request = fetch.build()
            with self._observer.exchange(fetch.key, request) as record:
                outcome = await self.perform(request, deadline)
                record(outcome)
        finally:
            if capacity is not None:
                capacity.release()
        return fetch.complete(outcome)

    async def perform(self, request: HttpRequest, deadline: float | None = None) -> HttpOutcome:
        """One bounded exchange: no redirects, identity encoding, size cap, and an end by
        ``deadline`` (default: the configured timeout from now)."""
        if deadline is None:
            deadline = time.monotonic() + self._timeout
        transport = self._transport or self._make_transport()
        return await transport.perform(request, deadline)

    def _make_transport(self) -> AsyncTransport:
        # Imported on first use: a guard that never validates asynchronously loads neither.
        if self._transport is None:
            if self._client is None:
                from .aiohttp_client import AiohttpClient

                self._transport = AiohttpClient()
            else:
                from .httpx_client import HttpxAsyncClient

                self._transport = HttpxAsyncClient(self._client, self._timeout)
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
