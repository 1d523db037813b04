"""Django and DRF, run in a process of their own.

Django is configured once per process, and the django-oauth-toolkit interop server of
this test session configures it its own way; the Django suite (``django_suite/``) runs
under a separate pytest, its coverage measured like any subprocess's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_django_suite() -> None:
    env = {**os.environ, "TOKENGUARD_DJANGO_SUITE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(Path(__file__).parent / "django_suite"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
