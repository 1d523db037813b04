"""Starting and talking to worker processes (tests and the benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tokenguard.testing import DEFAULT_AUDIENCE, AuthServer

ROOT = Path(__file__).resolve().parents[2]


def job_for(
    server: AuthServer, redis_url: str, prefix: str, secret: str, **job: Any
) -> dict[str, Any]:
    return {
        "issuer": server.issuer,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "audience": DEFAULT_AUDIENCE,
        "redis_url": redis_url,
        "prefix": prefix,
        "secret": secret,
        **job,
    }


class Worker:
    """One worker process (a real OS process with its own guard)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet._worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()

    def line(self) -> str:
        assert self.process.stdout is not None
        text = self.process.stdout.readline()
        assert text, f"worker exited early ({self.process.poll()})"
        return text.strip()

    def send(self, text: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def result(self) -> Any:
        return json.loads(self.line())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
