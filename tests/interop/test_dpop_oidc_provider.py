"""DPoP (RFC 9449) against a real authorization server: panva's oidc-provider binds the
tokens, tokenguard checks the proofs.

The client (a :class:`~tokenguard.testing.DPoPKey`) sends a DPoP proof with its token
request; oidc-provider answers ``token_type`` ``DPoP`` with ``cnf.jkt`` in the JWT access
token, or in its introspection answer for an opaque one. Each token then validates with a
correct proof for the resource server's request, and every check refuses its broken twin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tokenguard import (
    ClientSecretBasic,
    DPoPProof,
    InvalidDPoPProof,
    InvalidTokenBinding,
    Issuer,
    Policy,
    TokenGuard,
    TokenGuardError,
    TokenInfo,
)
from tokenguard.testing import DPoPKey

from .conftest import OidcProviderServer

URL = "https://rs.example/orders/42"


@pytest.fixture
def guard(oidc_provider: OidcProviderServer) -> Iterator[TokenGuard]:
    server = oidc_provider
    with TokenGuard(
        issuers=[
            Issuer(
                server.issuer,
                client_auth=ClientSecretBasic(server.rs_client_id, server.rs_client_secret),
                allow_insecure_http=True,
            )
        ],
        policies=[
            Policy(name="jwt", audience=server.resource_jwt),
            Policy(name="opaque", audience=server.resource_opaque),
        ],
    ) as g:
        yield g


Validate = Callable[..., TokenInfo]


@pytest.fixture(params=["sync", "async"])
def validate(request: pytest.FixtureRequest, guard: TokenGuard) -> Iterator[Validate]:
    """guard.validate or guard.avalidate (on one loop for the test)."""
    if request.param == "sync":
        yield guard.validate
        return
    loop = asyncio.new_event_loop()

    def run(*args: Any, **kwargs: Any) -> TokenInfo:
        return loop.run_until_complete(guard.avalidate(*args, **kwargs))

    yield run
    loop.run_until_complete(guard.aclose())
    loop.close()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])  # the server's dpop_signing_alg_values
@pytest.mark.parametrize("kind", ["jwt", "opaque"])
def test_dpop_bound_tokens_validate_with_a_correct_proof(
    oidc_provider: OidcProviderServer, validate: Validate, kind: str, alg: str
) -> None:
    key = DPoPKey(alg)
    resource = oidc_provider.resource_jwt if kind == "jwt" else oidc_provider.resource_opaque
    token = oidc_provider.dpop_token(key, resource)
    for _ in range(2):  # first sight, then from the cache: a fresh proof each time
        proof = key.proof("GET", URL, access_token=token)
        info = validate(token, kind, dpop=DPoPProof(proof, "GET", URL, "DPoP"))
        assert info.cnf == {"jkt": key.thumbprint}
        assert info.client_id == oidc_provider.app_client_id
    assert info.cached
    assert info.token_type == ("at+jwt" if kind == "jwt" else "DPoP")


def _broken(key: DPoPKey, other: DPoPKey, token: str) -> dict[str, tuple[Any, str, type]]:
    """request context -> (expected error, description fragment); one per check."""
    now = time.time()

    def dpop(proof: Any, method: str = "GET", url: str = URL, scheme: str = "DPoP") -> Any:
        return DPoPProof(proof, method, url, scheme)

    good = key.proof("GET", URL, access_token=token)
    return {
        "other-key": (
            dpop(other.proof("GET", URL, access_token=token)),
            "bound to",
            InvalidDPoPProof,
        ),
        "other-token": (
            dpop(key.proof("GET", URL, access_token="x" + token)),
            "not for this access token",
            InvalidDPoPProof,
        ),
        "other-method": (dpop(good, method="DELETE"), "another HTTP method", InvalidDPoPProof),
        "other-url": (
            dpop(good, url="https://rs.example/orders/43"),
            "another URL",
            InvalidDPoPProof,
        ),
        "stale": (
            dpop(key.proof("GET", URL, access_token=token, iat=now - 600)),
            "too old",
            InvalidDPoPProof,
        ),
        "future": (
            dpop(key.proof("GET", URL, access_token=token, iat=now + 600)),
            "future",
            InvalidDPoPProof,
        ),
        "no-proof": (dpop(None), "required", InvalidDPoPProof),
        "two-proofs": (dpop([good, good]), "exactly one", InvalidDPoPProof),
        "as-bearer": (dpop(good, scheme="Bearer"), "DPoP scheme", InvalidTokenBinding),
        "no-context": (None, "needs a DPoP proof", InvalidTokenBinding),
    }


@pytest.mark.parametrize("kind", ["jwt", "opaque"])
def test_every_check_refuses_its_broken_twin(
    oidc_provider: OidcProviderServer, validate: Validate, kind: str
) -> None:
    key, other = DPoPKey(), DPoPKey()
    resource = oidc_provider.resource_jwt if kind == "jwt" else oidc_provider.resource_opaque
    token = oidc_provider.dpop_token(key, resource)
    for case, (context, reason, error) in _broken(key, other, token).items():
        with pytest.raises(TokenGuardError) as caught:
            validate(token, kind, dpop=context)
        assert type(caught.value) is error, (case, caught.value)
        assert reason in caught.value.description, (case, caught.value.description)
        assert caught.value.status_code == 401
    # A correct proof still passes, once; its replay does not.
    proof = key.proof("GET", URL, access_token=token)
    validate(token, kind, dpop=DPoPProof(proof, "GET", URL))
    with pytest.raises(InvalidDPoPProof, match="already used"):
        validate(token, kind, dpop=DPoPProof(proof, "GET", URL))


def test_the_server_refuses_a_replayed_token_request_proof(
    oidc_provider: OidcProviderServer,
) -> None:
    """What the AS does with a replayed proof at its token endpoint (pinned for the
    docs): 400 invalid_grant, not invalid_dpop_proof."""
    key = DPoPKey()
    proof = key.proof("POST", oidc_provider.token_endpoint)
    assert oidc_provider.token_request(oidc_provider.resource_jwt, dpop=proof).status_code == 200
    replay = oidc_provider.token_request(oidc_provider.resource_jwt, dpop=proof)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_server_metadata_names_its_dpop_algorithms(oidc_provider: OidcProviderServer) -> None:
    """RFC 9449 §5.1: the AS accepts ES256 and EdDSA proofs by default; tokenguard's
    default policy accepts those and more."""
    meta = oidc_provider.fetch_metadata()
    assert set(meta["dpop_signing_alg_values_supported"]) == {"ES256", "Ed25519", "EdDSA"}
    assert set(meta["dpop_signing_alg_values_supported"]) <= set(
        Policy(name="p", audience="a").dpop_algorithms
    )


# -- RFC 9701: signed introspection answers -------------------------------------------------


@pytest.mark.parametrize("bound", [False, True])
def test_signed_introspection_answers(
    oidc_provider: OidcProviderServer, bound: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """features.jwtIntrospection: asked for application/token-introspection+jwt, the
    server signs its answer (RS256, typ token-introspection+jwt, aud = our client id);
    tokenguard verifies it against the server's JWKS and reads the answer inside."""
    server = oidc_provider
    key = DPoPKey()
    if bound:
        token = server.dpop_token(key, server.resource_opaque)
    else:
        token = server.client_credentials_token(resource=server.resource_opaque)
    auth = ClientSecretBasic(server.rs_client_id, server.rs_client_secret)
    issuer = Issuer(
        server.issuer, client_auth=auth, allow_insecure_http=True, signed_introspection=True
    )
    policy = Policy(name="opaque", audience=server.resource_opaque, verified_cache_ttl=0)
    caplog.set_level("INFO", logger="tokenguard")
    with TokenGuard(issuers=[issuer], policies=[policy]) as guard:
        dpop = DPoPProof(key.proof("GET", URL, access_token=token), "GET", URL) if bound else None
        info = guard.validate(token, dpop=dpop)
        assert info.source == "introspection"
        assert info.client_id == server.app_client_id
        assert info.token_type == ("DPoP" if bound else "Bearer")
    assert "JWKS of" in caplog.text  # the answer's signature needed the server's keys
    assert "signed introspection answer" not in caplog.text
