"""The authorization server the introspection benchmarks talk to.

By default it is the benchmark's own :class:`~tokenguard.testing.AuthServer`, in the
benchmark process. The server is a Python thread-per-connection HTTP server whose threads
take turns with the client under test on one GIL; ``--as-subprocess`` moves it to a
child process (its own interpreter and GIL) to check that this does not change the
ratios. Either way the client's own CPU time is measured per thread.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from _common import TOKEN_SCOPES

from tokenguard.testing import AuthServer


class LocalTarget:
    """The in-process AuthServer, seen through the interface the benchmarks use."""

    where = "in the benchmark process"

    def __init__(self, server: AuthServer) -> None:
        self.server = server
        self.issuer = server.issuer
        self.jwks_uri = server.jwks_uri
        self.introspection_endpoint = server.introspection_endpoint
        self.client_id = server.client_id
        self.client_secret = server.client_secret

    def opaque_tokens(self, count: int) -> list[str]:
        return [self.server.issue_opaque(scopes=TOKEN_SCOPES, lifetime=3600) for _ in range(count)]

    def request_count(self, endpoint: str) -> int:
        return self.server.request_count(endpoint)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _serve(conn: Connection) -> None:
    """Child process: run an AuthServer and answer requests for tokens and counters."""
    with AuthServer(token_lifetime=3600) as server:
        conn.send(
            {
                "issuer": server.issuer,
                "jwks_uri": server.jwks_uri,
                "introspection_endpoint": server.introspection_endpoint,
                "client_id": server.client_id,
                "client_secret": server.client_secret,
            }
        )
        while True:
            command, argument = conn.recv()
            if command == "opaque":
                conn.send(
                    [
                        server.issue_opaque(scopes=TOKEN_SCOPES, lifetime=3600)
                        for _ in range(argument)
                    ]
                )
            elif command == "count":
                conn.send(server.request_count(argument))
            else:
                break


class RemoteTarget:
    """An AuthServer in a child process (its own interpreter and GIL), on loopback."""

    where = "in a child process"

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        child.close()
        info: dict[str, Any] = self._conn.recv()
        self.issuer: str = info["issuer"]
        self.jwks_uri: str = info["jwks_uri"]
        self.introspection_endpoint: str = info["introspection_endpoint"]
        self.client_id: str = info["client_id"]
        self.client_secret: str = info["client_secret"]

    def _ask(self, command: str, argument: Any) -> Any:
        self._conn.send((command, argument))
        return self._conn.recv()

    def opaque_tokens(self, count: int) -> list[str]:
        tokens: list[str] = self._ask("opaque", count)
        return tokens

    def request_count(self, endpoint: str) -> int:
        count: int = self._ask("count", endpoint)
        return count

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop", None))
            self._process.join(timeout=10)
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


Target = LocalTarget | RemoteTarget
