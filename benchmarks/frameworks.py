"""Framework benchmark (issue 8): requests/s of a minimal endpoint protected by tokenguard
(a cached token) against the same endpoint unprotected, under a real server.

    python benchmarks/frameworks.py            # FastAPI under uvicorn, Flask under waitress
    python benchmarks/frameworks.py --quick    # smoke run (short windows, one round)

Each server runs in its own process, one worker; the load comes from ``wrk`` when it is
installed (else a small asyncio HTTP/1.1 keep-alive client), over 16 connections. The two
endpoints are measured in alternating windows and the median of each is reported, with
the ratio protected / unprotected (target: at least 0.85).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokenguard.testing import AuthServer

HERE = Path(__file__).resolve().parent
CONNECTIONS = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(kind: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if kind == "fastapi":
        command = [
            sys.executable, "-m", "uvicorn", "_framework_apps:fastapi_app",
            "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    else:
        command = [
            sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={port}",
            "--threads=4", "_framework_apps:flask_app",
        ]  # fmt: skip
    # stderr to a file, never an undrained pipe: waitress warns about its queue under load.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(command, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode(errors="replace")[-2000:]) from None
            time.sleep(0.1)
    server.kill()
    raise TimeoutError(f"{kind} server did not start")


def wrk(url: str, token: str | None, seconds: float) -> float:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(seconds, 1):.0f}s", url]
    # (a benchmark token from the embedded test server: nothing secret on this argv)
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    if "Non-2xx" in output:
        raise RuntimeError(f"errors in the run: {output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert found is not None, output
    return float(found.group(1))


async def _asyncio_load(port: int, path: str, token: str | None, seconds: float) -> float:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
    count = 0
    stop = time.monotonic() + seconds

    async def connection() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40].decode(errors="replace"))
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            count += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return count / (time.monotonic() - started)


def measure(port: int, path: str, token: str | None, seconds: float) -> float:
    if shutil.which("wrk"):
        return wrk(f"http://127.0.0.1:{port}{path}", token, seconds)
    return asyncio.run(_asyncio_load(port, path, token, seconds))


def run(kind: str, server: AuthServer, seconds: float, rounds: int) -> tuple[float, float]:
    env = {**os.environ, "ISSUER": server.issuer, "AUDIENCE": "urn:test:api"}
    token = server.issue_jwt(scopes=["orders:read"], lifetime=3600)
    port = free_port()
    process = start_server(kind, port, env)
    try:
        measure(port, "/protected", token, 1)  # warm-up: keys fetched, token cached
        measure(port, "/open", None, 1)
        open_, protected = [], []
        for _ in range(rounds):
            open_.append(measure(port, "/open", None, seconds))
            protected.append(measure(port, "/protected", token, seconds))
    finally:
        process.terminate()
        process.wait(10)
    return statistics.median(open_), statistics.median(protected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args, _ = parser.parse_known_args()  # nox -s bench passes run.py's options too
    seconds, rounds = (1.0, 1) if args.quick else (5.0, 5)
    loader = "wrk" if shutil.which("wrk") else "asyncio client"
    print(f"Framework endpoints: {CONNECTIONS} connections, {loader}, {rounds} x {seconds:.0f} s")
    print(f"{'framework':<22} {'unprotected req/s':>18} {'protected req/s':>16} {'ratio':>6}")
    with AuthServer() as server:
        for kind, label in (("fastapi", "FastAPI (uvicorn)"), ("flask", "Flask (waitress)")):
            unprotected, protected = run(kind, server, seconds, rounds)
            ratio = protected / unprotected
            print(f"{label:<22} {unprotected:>18,.0f} {protected:>16,.0f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
