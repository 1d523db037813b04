"""Fixtures for the framework integrations: one authorization server for the module,
the examples loaded with their environment pointing at it, real servers."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tokenguard.testing import AuthServer

from .contract import example_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The Django suite configures Django for its whole process, which the django-oauth-toolkit
# interop server also does: it runs in a process of its own (test_django.py).
collect_ignore = [] if os.environ.get("TOKENGUARD_DJANGO_SUITE") else ["django_suite"]


@pytest.fixture(scope="module")
def auth() -> Iterator[AuthServer]:
    """An authorization server shared by a module's tests (taken down by some)."""
    with AuthServer() as server:
        yield server


@pytest.fixture(scope="module")
def env(auth: AuthServer) -> Iterator[dict[str, str]]:
    values = example_env(auth)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield values
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh (it reads the environment when imported)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
