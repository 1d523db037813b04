"""What a shell needs from a shared-store driver (the fleet's Redis clients)."""

from __future__ import annotations

from typing import Protocol

from ..core.needs import StoreFailure, StoreOp, StoreOutcome

__all__ = ["NO_STORE", "AsyncStoreDriver", "SyncStoreDriver"]

#: The answer to a store need when the guard has no store.
NO_STORE = StoreFailure("no shared store configured")


class SyncStoreDriver(Protocol):
    """Performs store operations in one round trip, bounded by a short timeout; never
    raises: a failure is returned as a :class:`StoreFailure`."""

    def perform(self, ops: tuple[StoreOp, ...]) -> StoreOutcome: ...


class AsyncStoreDriver(Protocol):
    """The asyncio twin of :class:`SyncStoreDriver`."""

    async def perform(self, ops: tuple[StoreOp, ...]) -> StoreOutcome: ...
