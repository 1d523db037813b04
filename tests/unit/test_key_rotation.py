"""Keys that rotate without warning (issue 9): an unknown kid on a token issued after our
keys were fetched refreshes early, forged kids cause a bounded number of fetches, and
where no refresh is allowed the answer is 503 with Retry-After, never 401."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from freezegun import freeze_time

from tokenguard.errors import InvalidSignature, ValidationUnavailable

from . import test_engine
from ._support import public_jwk
from .test_engine import JWKS, Server, engine, json_response

token = test_engine.token  # the fixture: RS256 tokens with kid k1, claims overridable


@pytest.fixture
def published(keys: SimpleNamespace) -> dict[str, Any]:
    """The JWKS the server publishes; tests add keys to it."""
    return {"keys": [public_jwk(keys.rsa, kid="k1", alg="RS256")]}


def test_genuine_new_key_is_fetched_at_once(
    token: Callable[..., str], keys: SimpleNamespace, published: dict[str, Any]
) -> None:
    e = engine()
    server = Server({JWKS: lambda _r: json_response(published)})
    with freeze_time() as clock:
        server.run(e, token())
        clock.tick(2)  # well inside the 15 s cooldown
        published["keys"].append(public_jwk(keys.rsa_other, kid="k2", alg="RS256"))
        fresh = token({"kid": "k2"}, key=keys.rsa_other, iat=int(time.time()))
        assert server.run(e, fresh).subject == "alice"
    assert server.urls == [JWKS, JWKS]


def test_no_refresh_allowed_yet_is_503_with_retry_after(
    token: Callable[..., str], keys: SimpleNamespace, published: dict[str, Any]
) -> None:
    e = engine()
    server = Server({JWKS: lambda _r: json_response(published)})
    with freeze_time() as clock:
        server.run(e, token())
        clock.tick(0.2)  # inside the one-second early gap
        forged = token({"kid": "k9"}, key=keys.rsa_other, iat=int(time.time()))
        with pytest.raises(ValidationUnavailable) as raised:
            server.run(e, forged)
        assert raised.value.status_code == 503
        assert raised.value.retry_after == 1
        assert raised.value.headers() == {"Retry-After": "1"}
        assert server.urls == [JWKS]


def test_forged_kids_cause_a_bounded_number_of_fetches(
    token: Callable[..., str], keys: SimpleNamespace, published: dict[str, Any]
) -> None:
    """A flood of fresh tokens with random kids for 60 s: about one fetch per cooldown
    after the first few early ones (1, 2, 4, 8 s gaps), never one per token."""
    e = engine()
    server = Server({JWKS: lambda _r: json_response(published)})
    outcomes: dict[str, int] = {}
    with freeze_time() as clock:
        server.run(e, token())
        for step in range(600):
            clock.tick(0.1)
            forged = token({"kid": f"kid-{step}"}, key=keys.rsa_other, iat=int(time.time()))
            try:
                server.run(e, forged)
            except (InvalidSignature, ValidationUnavailable) as error:
                name = type(error).__name__
                outcomes[name] = outcomes.get(name, 0) + 1
    fetches = len(server.urls)
    assert fetches <= 1 + 4 + 60 / 15 + 1, fetches  # first, early ones, per cooldown
    assert outcomes["ValidationUnavailable"] > 0
    assert sum(outcomes.values()) == 600  # none passed


def test_token_older_than_our_keys_is_401_without_fetch(
    token: Callable[..., str], keys: SimpleNamespace
) -> None:
    e = engine()
    server = Server({JWKS: lambda _r: json_response({"keys": [public_jwk(keys.rsa, kid="k1")]})})
    server.run(e, token())
    old = token({"kid": "k7"}, key=keys.rsa_other, iat=int(time.time()) - 600)
    with pytest.raises(InvalidSignature):
        server.run(e, old)
    assert server.urls == [JWKS]


def test_refresh_that_does_not_bring_the_key_is_401(
    token: Callable[..., str], keys: SimpleNamespace, published: dict[str, Any]
) -> None:
    e = engine()
    server = Server({JWKS: lambda _r: json_response(published)})
    with freeze_time() as clock:
        server.run(e, token())
        clock.tick(1.5)  # past the early gap: this token may refresh
        forged = token({"kid": "k9"}, key=keys.rsa_other, iat=int(time.time()))
        with pytest.raises(InvalidSignature):
            server.run(e, forged)  # we just looked: the server has no such key
        assert server.urls == [JWKS, JWKS]
