"""The Django suite's process: Django configured by ``examples/django_app.py``, whose
environment points at an authorization server started here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from tokenguard.testing import AuthServer

from ..conftest import load_example
from ..contract import example_env


@pytest.fixture(scope="session")
def auth() -> Iterator[AuthServer]:
    with AuthServer() as server:
        yield server


@pytest.fixture(scope="session")
def example(auth: AuthServer) -> ModuleType:
    os.environ.update(example_env(auth))
    return load_example("django_app")
