"""benchmarks/gateway.py runs (1 s per step); its figures go to docs, never asserted."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import IN_CI, ROOT


def test_gateway_benchmark_quick_run() -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is not installed (tests/gateway/setup.sh installs it)")
        pytest.skip("wrk is not installed (run tests/gateway/setup.sh)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gateway.py"), "--quick", "--skip-granian"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in ("Decisions/s on a cached token", "2 workers / 1 worker", "added by the gateway"):
        assert line in result.stdout
