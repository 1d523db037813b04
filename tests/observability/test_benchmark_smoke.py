"""benchmarks/observability.py runs (a quick pass); its figures are read in docs, never
asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_observability_benchmark_quick_run() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "observability.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in ("Cached path", "First-seen JWT", "uncounted", "otel no-op", "otel SDK"):
        assert line in result.stdout
