"""The needs of a validation flow other than HTTP, and what the shells hand back. No I/O.

A flow yields an :class:`~tokenguard.core.exchange.Fetch` when it needs the network.
Everything else it may need from the outside world is one of the kinds here:

* :class:`Store`: operations on the shared store (the fleet's Redis, a DPoP replay
  store), performed in one round trip, in order. ``complete`` is core code that turns
  the results (or a :class:`StoreFailure`) into the value sent back into the flow, as
  ``Fetch.complete`` does for HTTP. A shell without a store answers every ``Store``
  with a ``StoreFailure``.
* :class:`Pause`: wait a little (polling another process's flight).
* :class:`Joint`: run a sub-flow once per ``key`` however many flows need it at the same
  moment (the single-flight the shells already apply to a ``Fetch``, for a whole step
  made of several needs, e.g. "shared answer, else cross-process lock, else introspect").

The shells dispatch on the type: ``Fetch`` first (the common case), then these.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Joint",
    "Pause",
    "Store",
    "StoreAdd",
    "StoreDelete",
    "StoreFailure",
    "StoreGet",
    "StoreOp",
    "StoreOutcome",
    "StorePublish",
    "StorePut",
    "StoreRange",
]


@dataclass(frozen=True, slots=True)
class StoreGet:
    """Read keys; the result is a tuple of ``bytes | None``, one per key (MGET)."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StorePut:
    """Write ``value`` under ``key`` for ``ttl`` seconds (> 0); with ``only_if_absent``
    the write happens only if the key does not exist (SET NX). Result: whether it was
    written."""

    key: bytes
    value: bytes = field(repr=False)
    ttl: float
    only_if_absent: bool = False


@dataclass(frozen=True, slots=True)
class StoreDelete:
    """Delete keys; result: how many existed."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StoreAdd:
    """Add ``member`` to the sorted set ``key`` with ``score`` and drop members scored
    below ``drop_below`` (expired); keep the set for ``ttl`` seconds. Result: None."""

    key: bytes
    member: bytes = field(repr=False)
    score: float
    drop_below: float
    ttl: float


@dataclass(frozen=True, slots=True)
class StoreRange:
    """Members of the sorted set ``key`` scored at least ``min_score`` (at most
    ``limit``); result: a tuple of bytes."""

    key: bytes
    min_score: float
    limit: int


@dataclass(frozen=True, slots=True)
class StorePublish:
    """Publish ``message`` on ``channel``; result: the number of receivers."""

    channel: bytes
    message: bytes = field(repr=False)


StoreOp = StoreGet | StorePut | StoreDelete | StoreAdd | StoreRange | StorePublish


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """The store could not be used (``reason`` is safe to log)."""

    reason: str


StoreOutcome = tuple[Any, ...] | StoreFailure


@dataclass(frozen=True, slots=True)
class Store:
    """Operations on the shared store, in one round trip; ``complete`` gets their
    results in order (or the failure) and returns what the flow receives."""

    ops: tuple[StoreOp, ...]
    complete: Callable[[StoreOutcome], Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep ``seconds`` (the flow receives None)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Joint:
    """Drive the sub-flow ``start()`` makes once per ``key``: concurrent flows with the
    same key receive the value the first one's sub-flow returned. Only that first flow
    calls ``start``. Like ``Fetch.complete``, a sub-flow returns an error rather than
    raising it (every waiter raises its own copy)."""

    key: Hashable
    start: Callable[[], Generator[Any, Any, Any]] = field(repr=False)
