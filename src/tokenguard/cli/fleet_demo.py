"""``tokenguard demo --fleet``: two processes, one cache and one revocation, on Redis.

The parent runs the embedded authorization server and starts two worker processes (this
module run with ``-m``), each with its own :class:`TokenGuard` in the same fleet. It
asks them to validate and revoke, and shows that an answer introspected by one serves
the other, and that a revocation made in one is refused by the other at once; a third
process started afterwards refuses them too, before it has seen any token.

Redis: ``--redis-url`` (default ``TOKENGUARD_REDIS_URL`` or ``redis://127.0.0.1:6379/0``);
when nothing answers there and ``redis-server`` is installed, a private one is started on
a free loopback port for the demo. Keys live under a fresh prefix and are deleted after.
Secrets reach the workers in their environment, never on a command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import click

from .terminal import CommandError

__all__ = ["run_fleet_demo"]

_ENV = "TOKENGUARD_FLEET_DEMO"


class _Stopped(CommandError):
    """A worker process died: a failure, not a usage error."""

    exit_code = 1


class _Process:
    """A worker process of the demo, driven line by line (JSON)."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokenguard.cli.fleet_demo"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, _ENV: json.dumps(settings)},
        )
        self.ask({"op": "ready"})

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise _Stopped(f"process {self.name} stopped unexpectedly")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.ask({"op": "quit"})
        self.process.wait(10)


def _reachable(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _redis(url: str) -> Iterator[str]:
    """``url`` if a Redis answers there, else a private redis-server for the demo."""
    if _reachable(url):
        yield url
        return
    where = url.rsplit("@", 1)[-1]  # never the credentials a URL may carry
    binary = shutil.which("redis-server")
    if binary is None:
        raise CommandError(
            f"no Redis answers at {where} and redis-server is not installed: "
            "start one, or give --redis-url"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(  # noqa: S603 - our own redis-server, fixed arguments
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        private = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 10
            while not _reachable(private):
                if time.monotonic() > deadline:
                    raise CommandError("could not start a private redis-server")
                time.sleep(0.05)
            click.echo(f"(no Redis at {where}: started a private redis-server on port {port})")
            yield private
        finally:
            server.terminate()
            server.wait(10)


def _show(who: str, what: str, answer: dict[str, Any], note: str = "") -> None:
    if answer.get("valid"):
        result = click.style("valid", fg="green") + (" (cached)" if answer["cached"] else "")
    else:
        result = click.style(answer.get("error", "refused"), fg="red")
    padded = result + " " * max(0, 28 - len(click.unstyle(result)))
    click.echo(f"  {who:<10} {what:<34} {padded} {note}".rstrip())


def run_fleet_demo(redis_url: str) -> None:
    """The demo itself (see the module docstring)."""
    import redis

    from ..testing import DEFAULT_AUDIENCE, AuthServer

    with _redis(redis_url) as url, AuthServer() as server:
        prefix = f"tokenguard-demo-{secrets.token_hex(4)}"
        settings = {
            "issuer": server.issuer,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "audience": DEFAULT_AUDIENCE,
            "redis_url": url,
            "prefix": prefix,
            "secret": secrets.token_urlsafe(32),
        }
        click.secho(f"embedded authorization server at {server.issuer}", bold=True)
        click.secho(f"fleet on Redis {url.rsplit('@', 1)[-1]}, key prefix {prefix}", bold=True)
        a, b = _Process("A", settings), _Process("B", settings)
        third: _Process | None = None
        try:
            pids = f"A (pid {a.process.pid}) and B (pid {b.process.pid})"
            click.echo(f"two processes, {pids}, each with its own TokenGuard in the fleet\n")
            opaque = server.issue_opaque(scopes=["orders:read"], subject="alice")
            jwt = server.issue_jwt(
                scopes=["orders:read"], subject="alice", issued_at=time.time() - 5
            )
            _show(
                "process A",
                "opaque token, first sight",
                a.ask({"op": "validate", "token": opaque}),
                f"introspected: AS calls {server.request_count('introspection')}",
            )
            _show(
                "process B",
                "the same opaque token",
                b.ask({"op": "validate", "token": opaque}),
                f"answered by Redis: AS calls {server.request_count('introspection')}",
            )
            _show(
                "process B",
                "JWT of alice",
                b.ask({"op": "validate", "token": jwt}),
                "verified locally",
            )
            a.ask({"op": "revoke", "token": opaque})
            click.echo("  process A  guard.revoke(opaque token)")
            revoked = b.ask({"op": "until_refused", "token": opaque})
            note = f"refused {revoked['ms']:.1f} ms after A's call returned"
            _show("process B", "the revoked opaque token", revoked, note)
            a.ask({"op": "revoke_subject", "subject": "alice"})
            click.echo('  process A  guard.revoke_subject("alice")')
            cut = b.ask({"op": "until_refused", "token": jwt})
            note = f"refused {cut['ms']:.1f} ms after A's call returned, no network"
            _show("process B", "JWT of alice (was cached valid)", cut, note)
            third = _Process("C", settings)
            click.echo(f"\na third process, C (pid {third.process.pid}), starts now:")
            _show(
                "process C",
                "the revoked opaque token",
                third.ask({"op": "validate", "token": opaque}),
                "loaded the stored revocations before serving",
            )
            _show("process C", "JWT of alice", third.ask({"op": "validate", "token": jwt}))
            fresh = server.issue_jwt(
                scopes=["orders:read"], subject="alice", issued_at=time.time() + 1
            )
            _show(
                "process C",
                "a new JWT of alice",
                third.ask({"op": "validate", "token": fresh}),
                "issued after the cut-off",
            )
            click.echo(
                f"\nintrospection calls at the AS in all: {server.request_count('introspection')}"
            )
        finally:
            for process in (a, b, third):
                if process is not None:
                    process.close()
            client = redis.Redis.from_url(url)
            with contextlib.suppress(redis.RedisError):
                keys = list(client.scan_iter(match=f"{prefix}:*"))
                if keys:
                    client.delete(*keys)
            client.close()


def _worker() -> None:  # pragma: no cover - runs in the demo's child processes
    from .. import ClientSecretBasic, Issuer, Policy, TokenGuard, TokenGuardError
    from ..redis import RedisFleet

    settings = json.loads(os.environ[_ENV])
    guard = TokenGuard(
        issuers=[
            Issuer(
                settings["issuer"],
                client_auth=ClientSecretBasic(settings["client_id"], settings["client_secret"]),
                allow_insecure_http=True,  # the embedded server, on loopback
            )
        ],
        policies=[
            Policy(name="orders", audience=settings["audience"], required_scopes=["orders:read"])
        ],
        fleet=RedisFleet(settings["redis_url"], settings["secret"], prefix=settings["prefix"]),
    )
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {}
        op = request["op"]
        if op in ("validate", "until_refused"):
            # until_refused: validate again and again (1 ms apart, 2 s at most) until the
            # token is refused; report how long that took.
            started = time.perf_counter()
            while True:
                try:
                    info = guard.validate(request["token"])
                    answer = {"valid": True, "cached": info.cached}
                except TokenGuardError as error:
                    answer = {
                        "valid": False,
                        "error": f"{error.status_code} {type(error).__name__}",
                    }
                waited = time.perf_counter() - started
                if op == "validate" or not answer["valid"] or waited > 2:
                    break
                time.sleep(0.001)
            answer["ms"] = waited * 1000
        elif op == "revoke":
            guard.revoke(request["token"])
        elif op == "revoke_subject":
            guard.revoke_subject(request["subject"])
        elif op == "quit":
            print("{}", flush=True)
            break
        print(json.dumps(answer), flush=True)
    guard.close()


if __name__ == "__main__":  # pragma: no cover
    _worker()
