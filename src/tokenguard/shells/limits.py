"""Bounds on concurrent requests: a pool of slots per budget, shared by threads and loops.

Random strings sent as bearer tokens each cost an introspection request: without a bound,
a flood of them turns a resource server into a load generator against its authorization
server. Each introspection therefore takes a slot of its issuer's :class:`Capacity`
(``Settings.max_concurrent_introspections``) for the time of its exchange. A request that
finds every slot taken waits a short, bounded time (``Settings.introspection_queue_wait``)
and is then refused: the flow gets a 503 with a ``Retry-After`` hint instead of queueing
without limit.

Waiters are served last in, first out. Under a sustained overload every request that
waits the full time is refused anyway, whatever the order; serving the newest first means
those that are served are served at once, instead of after nearly the whole wait as a
first-in, first-out queue would (the idea of "adaptive LIFO" queues in overloaded
services). When the overload is shorter than the wait, every waiter is served either way.

One guard's sync and async shells share one set of capacities, so the bound holds
however a service mixes threads and event loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Hashable
from typing import Literal

__all__ = ["Capacities", "Capacity", "GiveUp"]

log = logging.getLogger("tokenguard.shells")

#: Refusals are logged at most this often per capacity (a flood must not flood the logs).
_LOG_INTERVAL = 10.0


class GiveUp(Exception):
    """A shell stops waiting for a need: ``why`` is ``"busy"`` (the need's budget stayed
    full for the whole wait allowed) or ``"overdue"`` (the request another flow made for
    it passed its deadline). The shell raises the matching error into the flow."""

    def __init__(self, why: Literal["busy", "overdue"]) -> None:
        super().__init__(why)
        self.why: Literal["busy", "overdue"] = why


class _Waiter:
    """One blocked acquirer; ``granted`` (written under the capacity's lock) says whether
    a slot was handed to it."""

    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False

    def wake(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


class _ThreadWaiter(_Waiter):
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._lock.acquire()  # released by wake()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=max(timeout, 0.0))

    def wake(self) -> bool:
        self._lock.release()
        return True


class _TaskWaiter(_Waiter):
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # its loop is closed: nobody is waiting any more
            return False
        return True

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Capacity:
    """At most ``size`` holders at once; others wait (newest first) until a deadline."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._held = 0
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []  # a stack: the newest waiter is served first
        self._refused = 0
        self._logged_at = float("-inf")

    @property
    def held(self) -> int:
        """Slots taken now."""
        return self._held

    def acquire(self, deadline: float) -> bool:
        """Take a slot, waiting (blocking this thread) until ``deadline`` at most
        (``time.monotonic()``). Returns whether a slot was taken."""
        with self._lock:
            if self._held < self.size:
                self._held += 1
                return True
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        if waiter.wait(deadline - time.monotonic()):
            return True
        return self._give_up(waiter)

    async def aacquire(self, deadline: float) -> bool:
        """:meth:`acquire` for a task: waits without blocking its event loop."""
        with self._lock:
            if self._held < self.size:
                self._held += 1
                return True
            waiter = _TaskWaiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter.future
        except TimeoutError:
            return self._give_up(waiter)
        except BaseException:  # cancelled: hand back a slot that may have been granted
            if not self._give_up(waiter, count=False):
                raise
            self.release()
            raise
        return True

    def _give_up(self, waiter: _Waiter, *, count: bool = True) -> bool:
        """The waiter stops waiting: True if a slot was granted to it meanwhile (it is then
        the waiter's to release), else it leaves the queue and the refusal is counted."""
        with self._lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if not count:
                return False
            self._refused += 1
            now = time.monotonic()
            if now - self._logged_at < _LOG_INTERVAL:
                return False
            refused, self._refused, self._logged_at = self._refused, 0, now
        log.warning(
            "%s: %d request(s) refused (503) because %d were already in flight",
            self.name,
            refused,
            self.size,
        )
        return False

    def release(self) -> None:
        """Give a slot back: to the newest waiter if any, else to the pool."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.pop()
                waiter.granted = True
                if waiter.wake():
                    return
                waiter.granted = False  # its loop is gone: try the next one
            self._held -= 1


class Capacities:
    """The capacity of each budget (one per issuer), created on first use."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        #: How long a request may wait for a slot before it is refused.
        self.wait = wait
        self._lock = threading.Lock()
        self._capacities: dict[Hashable, Capacity] = {}

    def get(self, budget: Hashable) -> Capacity:
        capacity = self._capacities.get(budget)
        if capacity is None:
            with self._lock:
                capacity = self._capacities.get(budget)
                if capacity is None:
                    capacity = Capacity(self.size, _describe(budget))
                    self._capacities[budget] = capacity
        return capacity


def _describe(budget: Hashable) -> str:
    if isinstance(budget, tuple) and len(budget) == 2:
        return f"{budget[0]} of {budget[1]}"
    return str(budget)
