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
from typing import NamedTuple

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, token: str | None, seconds: float) -> tuple[float, int]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(seconds, 1):.0f}s", url]
    # (a benchmark token from the embedded test server: nothing secret on this argv)
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    if "Non-2xx" in output:
        raise RuntimeError(f"errors in the run: {output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    assert found is not None, output
    assert total is not None, output
    return float(found.group(1)), int(total.group(1))


async def _asyncio_load(
    port: int, path: str, token: str | None, seconds: float
) -> tuple[float, int]:
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
    return count / (time.monotonic() - started), count


def measure(pid: int, port: int, path: str, token: str | None, seconds: float) -> Sample:
    """One window: requests/s seen by the client, and the server's CPU per request."""
    cpu = cpu_seconds(pid)
    if shutil.which("wrk"):
        rate, count = wrk(f"http://127.0.0.1:{port}{path}", token, seconds)
    else:
        rate, count = asyncio.run(_asyncio_load(port, path, token, seconds))
    return Sample(rate, (cpu_seconds(pid) - cpu) / max(count, 1) * 1e6)


class Sample(NamedTuple):
    rate: float  # requests/s
    cpu_us: float  # server CPU time per request, microseconds


def run(
    kind: str, server: AuthServer, seconds: float, rounds: int
) -> tuple[Sample, Sample, Sample | None]:
    env = {**os.environ, "ISSUER": server.issuer, "AUDIENCE": "urn:test:api"}
    token = server.issue_jwt(scopes=["orders:read"], lifetime=3600)
    port = free_port()
    process = start_server(kind, port, env)
    try:
        measure(process.pid, port, "/protected", token, 1)  # warm-up: keys fetched, cached
        measure(process.pid, port, "/open", None, 1)
        open_, protected, reference = [], [], []
        for _ in range(rounds):
            open_.append(measure(process.pid, port, "/open", None, seconds))
            protected.append(measure(process.pid, port, "/protected", token, seconds))
            if kind == "fastapi":
                reference.append(measure(process.pid, port, "/reference", token, seconds))
    finally:
        process.terminate()
        process.wait(10)
    return _median(open_), _median(protected), _median(reference) if reference else None


def _median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.rate for s in samples), statistics.median(s.cpu_us for s in samples)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args, _ = parser.parse_known_args()  # nox -s bench passes run.py's options too
    seconds, rounds = (1.0, 1) if args.quick else (5.0, 5)
    loader = "wrk" if shutil.which("wrk") else "asyncio client"
    print(f"Framework endpoints: {CONNECTIONS} connections, {loader}, {rounds} x {seconds:.0f} s")
    print(
        "ratio: protected/unprotected requests/s; CPU ratio: unprotected/protected server CPU"
        " per request (the capacity ratio, steadier on a busy machine)"
    )
    header = ("framework", "open req/s", "protected req/s", "ratio", "open CPU", "prot. CPU")
    print("{:<20} {:>11} {:>16} {:>6} {:>10} {:>10} {:>10}".format(*header, "CPU ratio"))
    with AuthServer() as server:
        for kind, label in (("fastapi", "FastAPI (uvicorn)"), ("flask", "Flask (waitress)")):
            open_, protected, reference = run(kind, server, seconds, rounds)
            print(
                f"{label:<20} {open_.rate:>11,.0f} {protected.rate:>16,.0f} "
                f"{protected.rate / open_.rate:>6.2f} {open_.cpu_us:>8.0f}us "
                f"{protected.cpu_us:>8.0f}us {open_.cpu_us / protected.cpu_us:>10.2f}"
            )
            if reference is not None:
                print(
                    f"  reference: FastAPI's own HTTPBearer (reads the header, validates nothing):"
                    f" {reference.rate:,.0f} req/s, {reference.cpu_us:.0f}us CPU; tokenguard"
                    f" vs it: {protected.rate / reference.rate:.2f} (req/s),"
                    f" {reference.cpu_us / protected.cpu_us:.2f} (CPU)"
                )


if __name__ == "__main__":
    main()
