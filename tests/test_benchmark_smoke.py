"""The benchmark script runs (a quick pass); its figures are read in docs, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_run() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for table in (
        "RS256",
        "ES256",
        "EdDSA",
        "HS256",
        "DPoP-bound JWT",
        "Stampede",
        "Memory per cached token",
    ):
        assert table in result.stdout
