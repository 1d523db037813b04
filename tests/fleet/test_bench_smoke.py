"""The fleet benchmark runs (a quick pass); its figures are read in docs/fleet.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fleet_benchmark_quick_run(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fleet_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"TOKENGUARD_TEST_REDIS_URL": redis_url, **__import__("os").environ},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    for section in ("## 1.", "## 2.", "## 3.", "## 4."):
        assert section in out
    assert "validations ok / failed        80 / 0" in out  # 2 processes x 40 tokens
