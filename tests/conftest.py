"""Shared fixtures: a guard for the embedded authorization server, driven sync or async.

Tests that take ``check`` run twice, once through ``TokenGuard.validate`` and once through
``TokenGuard.avalidate`` (on one event loop per test), so the two shells cannot drift.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tokenguard import TokenGuard, TokenInfo
from tokenguard.testing import DEFAULT_AUDIENCE, guard_for

AUDIENCE = DEFAULT_AUDIENCE
__all__ = ["AUDIENCE", "Driver", "guard_for"]


Check = Callable[..., TokenInfo]


class Driver:
    """Runs validations through one shell; ``kind`` is "sync" or "async"."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.guards: list[TokenGuard] = []

    def __call__(
        self, guard: TokenGuard, token: str, policy: str | None = None, **options: Any
    ) -> TokenInfo:
        """One validation; ``options`` (``dpop``, ``client_certificate``) are passed on."""
        if guard not in self.guards:
            self.guards.append(guard)
        if self.loop is None:
            return guard.validate(token, policy, **options)
        return self.loop.run_until_complete(guard.avalidate(token, policy, **options))

    def many(self, guard: TokenGuard, tokens: list[str], policy: str | None = None) -> list[Any]:
        """Validate all ``tokens`` at once (threads or tasks); results or exceptions."""
        self.guards.append(guard)
        if self.loop is None:
            from concurrent.futures import ThreadPoolExecutor

            def one(token: str) -> Any:
                try:
                    return guard.validate(token, policy)
                except Exception as error:
                    return error

            with ThreadPoolExecutor(max_workers=min(len(tokens), 64)) as pool:
                return list(pool.map(one, tokens))

        async def all_at_once() -> list[Any]:
            return await asyncio.gather(
                *(guard.avalidate(t, policy) for t in tokens), return_exceptions=True
            )

        return self.loop.run_until_complete(all_at_once())

    def close(self) -> None:
        for guard in self.guards:
            if self.loop is not None:
                self.loop.run_until_complete(guard.aclose())
            guard.close()
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def check(request: pytest.FixtureRequest) -> Iterator[Driver]:
    driver = Driver(request.param)
    yield driver
    driver.close()
