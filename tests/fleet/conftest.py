"""Fixtures for the fleet tests: the machine's Redis, a private redis-server, guards.

Redis comes from ``TOKENGUARD_TEST_REDIS_URL`` or ``redis://127.0.0.1:6379/0``. Without
it these tests are skipped with the reason, except under ``CI=true``, where a missing
Redis is a failure. Every test uses its own key prefix and deletes its keys afterwards
(the shared Redis is never flushed). Outage tests start their own ``redis-server`` on an
ephemeral port, so they can stop, pause and restart it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tokenguard import Policy, TokenGuard
from tokenguard.redis import RedisFleet
from tokenguard.testing import AuthServer, guard_for

SECRET = "fleet-test-secret-0123456789abcdef-XYZ"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Redis is required under CI=true: {reason}")
    pytest.skip(f"no Redis for the fleet tests ({reason}); set TOKENGUARD_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TOKENGUARD_TEST_REDIS_URL", DEFAULT_URL)
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        _unavailable(f"{type(error).__name__} at {url.rsplit('@', 1)[-1]}")
    finally:
        client.close()
    return url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"tgtest-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    with contextlib.suppress(redis.RedisError):
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def fleet_guard(
    server: AuthServer, url: str, prefix: str, *policies: Policy, **fleet: Any
) -> TokenGuard:
    """A guard trusting ``server``, in the fleet at ``url``/``prefix``."""
    guard = guard_for(server, *policies)
    options: dict[str, Any] = {"prefix": prefix, **fleet}
    fleet_member = RedisFleet(url, SECRET, **options)
    return TokenGuard.from_config(guard.config.model_dump(), fleet=fleet_member)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, on an ephemeral loopback port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed")
        self.binary = str(binary)
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.RedisError, OSError):
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path: Path, redis_url: str) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.stop()
