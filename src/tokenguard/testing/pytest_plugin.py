"""pytest fixtures for testing resource servers against :class:`~tokenguard.testing.AuthServer`.

Registered through the ``pytest11`` entry point, so the fixtures are available wherever
tokenguard and pytest are installed (the ``testing`` extra brings pytest:
``pip install ".[testing]"`` from a checkout). ``async def`` tests need pytest's async
support too: anyio's plugin (``@pytest.mark.anyio``; anyio comes with httpx) or
pytest-asyncio. Importing this module has no side effects, and it imports the
server only when a fixture is used: entry-point plugins are imported before pytest-cov
starts measuring, so anything imported here would show up as not covered.

Fixtures:
    auth_server: a started :class:`~tokenguard.testing.AuthServer`, one per test.
    auth_server_session: one server for the whole session; switches set by one test stay
        set for the next, so call ``auth_server_session.reset()`` where that matters.
    issue_token: mints a token from ``auth_server`` (see :class:`IssueToken`).
    token_guard: a :class:`~tokenguard.TokenGuard` trusting ``auth_server``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pytest

if TYPE_CHECKING:
    from tokenguard import TokenGuard
    from tokenguard.testing.server import AuthServer

__all__ = ["IssueToken", "auth_server", "auth_server_session", "issue_token", "token_guard"]


class IssueToken(Protocol):
    """The type of the ``issue_token`` fixture."""

    def __call__(
        self,
        scopes: Iterable[str] = ("orders:read",),
        audience: str | Sequence[str] | None = ...,
        format: Literal["jwt", "opaque"] = "jwt",
        **kwargs: Any,
    ) -> str:
        """Mint a token with :meth:`AuthServer.issue_jwt` (``format="jwt"``) or
        :meth:`AuthServer.issue_opaque` (``format="opaque"``); ``kwargs`` go to that method
        and the audience defaults to :data:`tokenguard.testing.DEFAULT_AUDIENCE`."""
        ...


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    """A started :class:`~tokenguard.testing.AuthServer`, stopped after the test."""
    from tokenguard.testing.server import AuthServer

    with AuthServer() as server:
        yield server


@pytest.fixture(scope="session")
def auth_server_session() -> Iterator[AuthServer]:
    """One started :class:`~tokenguard.testing.AuthServer` shared by the whole session."""
    from tokenguard.testing.server import AuthServer

    with AuthServer() as server:
        yield server


@pytest.fixture
def issue_token(auth_server: AuthServer) -> IssueToken:
    """Mint tokens from ``auth_server``: ``issue_token(["orders:read"], format="opaque")``."""
    from tokenguard.testing.clients import DEFAULT_AUDIENCE

    def issue(
        scopes: Iterable[str] = ("orders:read",),
        audience: str | Sequence[str] | None = DEFAULT_AUDIENCE,
        format: Literal["jwt", "opaque"] = "jwt",
        **kwargs: Any,
    ) -> str:
        if format == "jwt":
            return auth_server.issue_jwt(scopes=scopes, audience=audience, **kwargs)
        if format == "opaque":
            return auth_server.issue_opaque(scopes=scopes, audience=audience, **kwargs)
        raise ValueError(f"format must be 'jwt' or 'opaque', not {format!r}")

    return issue


@pytest.fixture
def token_guard(auth_server: AuthServer) -> Iterator[TokenGuard]:
    """A :class:`~tokenguard.TokenGuard` trusting ``auth_server``, with one policy
    ("default", audience :data:`~tokenguard.testing.DEFAULT_AUDIENCE`, hybrid mode)."""
    from tokenguard.testing import guard_for

    with guard_for(auth_server) as guard:
        yield guard
