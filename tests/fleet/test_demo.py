"""``tokenguard demo --fleet``: two real processes share one cache and one revocation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_fleet_demo_shows_shared_cache_and_revocation(redis_url: str) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("tokenguard")),
            "demo",
            "--fleet",
            "--redis-url",
            redis_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()

    def row(text: str) -> str:
        return next(line for line in lines if text in line)

    assert "valid (cached)" in row("the same opaque token")  # served by Redis
    assert "AS calls 1" in row("the same opaque token")
    assert "401 InactiveToken" in row("the revoked opaque token")
    assert "401 InactiveToken" in row("JWT of alice (was cached valid)")
    assert "loaded the stored revocations" in row("process C  the revoked opaque token")
    assert "valid" in row("a new JWT of alice")
    assert "introspection calls at the AS in all: 1" in result.stdout
