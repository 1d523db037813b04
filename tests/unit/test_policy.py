"""policy.py: routing of every (format, mode) pair, and configuration compilation."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tokenguard.client_auth import ClientSecretBasic
from tokenguard.config import GuardConfig, Issuer, Policy
from tokenguard.core.detect import TokenFormat
from tokenguard.core.policy import PolicyRuntime, Route, compile_config, route
from tokenguard.errors import ConfigurationError, MalformedToken, UnsupportedToken

from ._support import oct_jwk

A = "https://a.example"
B = "https://b.example"


def auth() -> ClientSecretBasic:
    return ClientSecretBasic("rs", "secret")


def compiled(issuers: list[Issuer], *policies: Policy) -> dict[str, PolicyRuntime]:
    _, runtimes = compile_config(GuardConfig(issuers=issuers, policies=policies))
    return runtimes


def runtime(mode: str, *, can_introspect: bool = True) -> PolicyRuntime:
    issuer = Issuer(A, client_auth=auth() if can_introspect else None)
    return compiled([issuer], Policy(name="p", audience="aud", mode=mode))["p"]


# -- route -------------------------------------------------------------------------------------


EXPECTED: dict[tuple[TokenFormat, str], Any] = {
    (TokenFormat.JWS, "jwt"): Route.LOCAL,
    (TokenFormat.JWS, "hybrid"): Route.LOCAL,
    (TokenFormat.JWS, "introspect"): Route.INTROSPECT,
    (TokenFormat.JWS, "high_assurance"): Route.BOTH,
    (TokenFormat.JWE, "jwt"): "Encrypted tokens are not accepted here",
    (TokenFormat.JWE, "hybrid"): Route.INTROSPECT,
    (TokenFormat.JWE, "introspect"): Route.INTROSPECT,
    (TokenFormat.JWE, "high_assurance"): Route.INTROSPECT,
    (TokenFormat.OPAQUE, "jwt"): "Opaque tokens are not accepted here",
    (TokenFormat.OPAQUE, "hybrid"): Route.INTROSPECT,
    (TokenFormat.OPAQUE, "introspect"): Route.INTROSPECT,
    (TokenFormat.OPAQUE, "high_assurance"): Route.INTROSPECT,
    (TokenFormat.MALFORMED, "jwt"): MalformedToken,
    (TokenFormat.MALFORMED, "hybrid"): MalformedToken,
    (TokenFormat.MALFORMED, "introspect"): MalformedToken,
    (TokenFormat.MALFORMED, "high_assurance"): MalformedToken,
}


def test_every_pair_is_covered() -> None:
    modes = {"jwt", "hybrid", "introspect", "high_assurance"}
    assert set(EXPECTED) == {(f, m) for f in TokenFormat for m in modes}


@pytest.mark.parametrize(("fmt", "mode"), list(EXPECTED))
def test_route(fmt: TokenFormat, mode: str) -> None:
    expected = EXPECTED[(fmt, mode)]
    policy = runtime(mode)
    if isinstance(expected, Route):
        assert route(fmt, policy) is expected
    elif expected is MalformedToken:
        with pytest.raises(MalformedToken) as info:
            route(fmt, policy)
        assert info.value.description == "The access token is malformed"
    else:
        with pytest.raises(UnsupportedToken, match=expected):
            route(fmt, policy)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        (TokenFormat.OPAQUE, "Opaque tokens are not accepted here"),
        (TokenFormat.JWE, "Encrypted tokens are not accepted here"),
    ],
)
def test_hybrid_without_introspector_refuses_opaque(fmt: TokenFormat, message: str) -> None:
    policy = runtime("hybrid", can_introspect=False)
    assert policy.introspector is None
    with pytest.raises(UnsupportedToken, match=message):
        route(fmt, policy)
    assert route(TokenFormat.JWS, policy) is Route.LOCAL


# -- compile_config -------------------------------------------------------------------------------


def test_runtime_fields() -> None:
    policy = Policy(
        name="p",
        audience="aud",
        algorithms=("ES256", "RS256"),
        required_scopes=("read", "write"),
        leeway=30,
        introspection_cache_ttl=40,
        inactive_cache_ttl=5,
        verified_cache_ttl=100,
    )
    issuers, policies = compile_config(
        GuardConfig(issuers=[Issuer(A, client_auth=auth()), Issuer(B)], policies=[policy])
    )
    rt = policies["p"]
    assert rt.config is policy
    assert rt.name == "p"
    assert rt.audience == "aud"
    assert rt.mode == "hybrid"
    assert rt.leeway == 30
    assert rt.algorithms == frozenset({"ES256", "RS256"})
    assert rt.required_scopes == frozenset({"read", "write"})
    assert set(rt.issuers) == {A, B}
    assert rt.introspector is issuers[A]
    assert (rt.active_cache_age, rt.inactive_cache_age, rt.verified_cache_ttl) == (40, 5, 100)
    assert issuers[A].issuer == A
    assert issuers[A].can_introspect
    assert not issuers[B].can_introspect


def test_high_assurance_runtime_bypasses_caches() -> None:
    policy = Policy(name="p", audience="aud", mode="high_assurance", high_assurance_cache_ttl=7)
    rt = compiled([Issuer(A, client_auth=auth())], policy)["p"]
    assert rt.active_cache_age == 7
    assert rt.inactive_cache_age == 0
    assert rt.verified_cache_ttl == 0


def test_policy_issuers_restrict_trust() -> None:
    rt = compiled([Issuer(A), Issuer(B)], Policy(name="p", audience="aud", issuers=(B,)))["p"]
    assert set(rt.issuers) == {B}


def test_issuer_runtime_key_sources(keys: Any) -> None:
    static = {"keys": [oct_jwk(b"s" * 32, kid="h")]}
    issuers, _ = compile_config(
        GuardConfig(
            issuers=[
                Issuer(A),
                Issuer(B, static_jwks=static),
                Issuer("https://c.example", static_jwks=static, jwks_uri="https://c.example/jwks"),
            ],
            policies=[Policy(name="p", audience="aud")],
        )
    )
    assert issuers[A].jwks is not None
    assert issuers[A].static is None
    assert issuers[B].jwks is None  # static keys only: nothing fetched
    assert issuers[B].static is not None
    assert issuers[B].static.keys[0].kid == "h"
    both = issuers["https://c.example"]
    assert both.jwks is not None
    assert both.static is not None


def test_static_jwks_not_a_key_set() -> None:
    with pytest.raises(
        ConfigurationError, match=r"static_jwks of https://a\.example is not a JWK Set"
    ):
        compiled([Issuer(A, static_jwks={"nokeys": []})], Policy(name="p", audience="aud"))


@pytest.mark.parametrize("mode", ["introspect", "high_assurance"])
def test_introspecting_modes_need_client_auth(mode: str) -> None:
    with pytest.raises(
        ConfigurationError, match=f"in {mode} mode needs an issuer with client_auth"
    ):
        compiled([Issuer(A)], Policy(name="p", audience="aud", mode=mode))


def test_high_assurance_needs_client_auth_on_every_issuer() -> None:
    policy = Policy(name="p", audience="aud", mode="high_assurance", introspection_issuer=A)
    with pytest.raises(ConfigurationError, match="every issuer of a high_assurance policy"):
        compiled([Issuer(A, client_auth=auth()), Issuer(B)], policy)
    # Restricting the policy to the introspecting issuer fixes it.
    policy = Policy(name="p", audience="aud", mode="high_assurance", issuers=(A,))
    assert (
        compiled([Issuer(A, client_auth=auth()), Issuer(B)], policy)["p"].mode == "high_assurance"
    )


def test_several_introspecting_issuers_need_a_choice() -> None:
    issuers = [Issuer(A, client_auth=auth()), Issuer(B, client_auth=auth())]
    with pytest.raises(ConfigurationError, match="several issuers that can introspect"):
        compiled(issuers, Policy(name="p", audience="aud"))
    rt = compiled(issuers, Policy(name="p", audience="aud", introspection_issuer=B))["p"]
    assert rt.introspector is not None
    assert rt.introspector.issuer == B


def test_introspection_issuer_without_client_auth() -> None:
    with pytest.raises(ConfigurationError, match="introspection_issuer has no client_auth"):
        compiled(
            [Issuer(A, client_auth=auth()), Issuer(B)],
            Policy(name="p", audience="aud", introspection_issuer=B),
        )


def test_hybrid_without_introspector_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tokenguard")
    compiled([Issuer(A)], Policy(name="p", audience="aud"))
    assert "opaque tokens are refused" in caplog.text


def test_jwt_mode_needs_no_client_auth() -> None:
    rt = compiled([Issuer(A)], Policy(name="p", audience="aud", mode="jwt"))["p"]
    assert rt.introspector is None
