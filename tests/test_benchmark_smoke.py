"""The benchmark script runs (a quick pass); its figures are read in docs, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)  # the subprocess's own bound: a busy machine is slow
def test_benchmark_quick_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--results",
            str(tmp_path),
        ],
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
    # --results: the tables as JSON and the figures of docs/performance-figures.md.
    assert (tmp_path / "results.json").is_file()
    drawn = sorted(path.name for path in tmp_path.glob("*.svg"))
    assert drawn == ["jwt.svg", "memory.svg", "opaque.svg", "throughput.svg"], result.stderr
