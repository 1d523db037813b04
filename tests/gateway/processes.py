"""Starting and stopping local servers (no pytest here: the gateway benchmark uses it too)."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time

__all__ = ["die_with_parent", "free_port", "stop", "wait_for_port"]


def die_with_parent() -> None:
    """``preexec_fn`` for servers a test run starts: on Linux, they get SIGTERM when the
    run itself dies (killed, timed out), so no server outlives it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A loopback port free right now (bind 0 where the server itself can)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, what: str = "server"
) -> None:
    """Wait until something accepts on ``port`` (at most 30 s; fail early if ``process``
    exits)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Interrupt ``process`` and wait for it (kill it after 15 s).

    SIGINT, not SIGTERM: uvicorn re-raises the signal it shut down on, and a SIGTERM
    then ends the process before coverage can write its data; a SIGINT ends it as a
    KeyboardInterrupt, through the normal exit. nginx takes both as "stop now"."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
