"""Claim attacks: wrong or absent ``iss``/``aud``/``exp``/``nbf``/``iat``, claims of the wrong
JSON type or out of range, tokens of another type (ID tokens, untyped JWTs), ``crit``,
``b64: false``, nested JWTs, sender-constrained tokens and scope tricks.

Tokens with a dict payload are signed by the issuer's real key (``issue_jwt(claims=...)``),
so the claim is the only thing wrong with them; payloads that need raw JSON text (``1e400``,
``NaN``, 5000-digit numbers) are signed by an insider key the guard trusts.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tokenguard import (
    ExpiredToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidSignature,
    InvalidTokenBinding,
    MalformedToken,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
)
from tokenguard.testing import AuthServer

from ..conftest import AUDIENCE, Driver, guard_for
from . import forge
from .conftest import Insider
from .support import accepted, rejected

NOW = int(time.time())
HUGE = 10**400  # an integer far beyond float range
# (claims overrides, expected error); None removes a claim.
_CLAIM_CASES: dict[str, tuple[dict[str, Any], type]] = {
    # iss: RFC 7519 §4.1.1, RFC 9068 §4 (exact match), RFC 8725 §3.8
    "iss-wrong": ({"iss": "https://evil.example"}, UntrustedIssuer),
    "iss-absent": ({"iss": None}, UntrustedIssuer),
    "iss-trailing-slash": ({"iss": "{issuer}/"}, UntrustedIssuer),
    "iss-upper-case": ({"iss": "{ISSUER}"}, UntrustedIssuer),
    "iss-prefix": ({"iss": "{issuer}.evil.example"}, UntrustedIssuer),
    "iss-empty": ({"iss": ""}, UntrustedIssuer),
    "iss-list": ({"iss": ["{issuer}"]}, InvalidClaims),
    "iss-number": ({"iss": 1}, InvalidClaims),
    "iss-object": ({"iss": {"iss": "{issuer}"}}, InvalidClaims),
    # aud: RFC 7519 §4.1.3, RFC 9068 §4, RFC 8725 §3.9
    "aud-other": ({"aud": "urn:somebody-else"}, InvalidAudience),
    "aud-absent": ({"aud": None}, InvalidAudience),
    "aud-empty-list": ({"aud": []}, InvalidAudience),
    "aud-empty-string": ({"aud": ""}, InvalidAudience),
    "aud-list-of-others": ({"aud": ["urn:a", "urn:b"]}, InvalidAudience),
    "aud-prefix": ({"aud": AUDIENCE[:-1]}, InvalidAudience),
    "aud-suffix": ({"aud": AUDIENCE + "x"}, InvalidAudience),
    "aud-upper-case": ({"aud": AUDIENCE.upper()}, InvalidAudience),
    "aud-space-joined": ({"aud": f"urn:other {AUDIENCE}"}, InvalidAudience),
    "aud-number": ({"aud": 1}, InvalidClaims),
    "aud-bool": ({"aud": True}, InvalidClaims),
    "aud-list-with-number": ({"aud": [AUDIENCE, 1]}, InvalidClaims),
    "aud-nested-list": ({"aud": [[AUDIENCE]]}, InvalidClaims),
    "aud-object": ({"aud": {AUDIENCE: True}}, InvalidClaims),
    # exp: RFC 7519 §4.1.4, RFC 9068 §2.2 (required)
    "exp-absent": ({"exp": None}, InvalidClaims),
    "exp-past": ({"exp": NOW - 3600}, ExpiredToken),
    "exp-zero": ({"exp": 0}, ExpiredToken),
    "exp-string": ({"exp": str(NOW + 300)}, InvalidClaims),
    "exp-bool": ({"exp": True}, InvalidClaims),
    "exp-list": ({"exp": [NOW + 300]}, InvalidClaims),
    "exp-object": ({"exp": {"v": NOW + 300}}, InvalidClaims),
    "exp-negative": ({"exp": -1}, InvalidClaims),
    "exp-10**30": ({"exp": 10**30}, InvalidClaims),
    "exp-10**400": ({"exp": HUGE}, InvalidClaims),
    "exp-float-1e300": ({"exp": 1e300}, InvalidClaims),
    "exp-year-10000": ({"exp": 253402300800}, InvalidClaims),
    # nbf: RFC 7519 §4.1.5
    "nbf-future": ({"nbf": NOW + 3600}, TokenNotYetValid),
    "nbf-string": ({"nbf": str(NOW)}, InvalidClaims),
    "nbf-bool": ({"nbf": False}, InvalidClaims),
    "nbf-negative": ({"nbf": -1}, InvalidClaims),
    "nbf-10**30": ({"nbf": 10**30}, InvalidClaims),
    "nbf-10**400": ({"nbf": HUGE}, InvalidClaims),
    # iat: RFC 7519 §4.1.6, RFC 9068 §2.2 (required in an at+jwt)
    "iat-future": ({"iat": NOW + 3600}, TokenNotYetValid),
    "iat-absent": ({"iat": None}, InvalidClaims),
    "iat-string": ({"iat": str(NOW)}, InvalidClaims),
    "iat-bool": ({"iat": True}, InvalidClaims),
    "iat-negative": ({"iat": -5}, InvalidClaims),
    "iat-10**400": ({"iat": HUGE}, InvalidClaims),
    # other registered claims of the wrong type: RFC 7519 §4.1, RFC 9068 §2.2, RFC 8693 §4.2
    "sub-number": ({"sub": 42}, InvalidClaims),
    "sub-list": ({"sub": ["user-1"]}, InvalidClaims),
    "sub-bool": ({"sub": False}, InvalidClaims),
    "client_id-number": ({"client_id": 7}, InvalidClaims),
    "jti-number": ({"jti": 1}, InvalidClaims),
    "scope-number": ({"scope": 1}, InvalidClaims),
    "scope-list-of-numbers": ({"scope": [1, 2]}, InvalidClaims),
    "scope-object": ({"scope": {"orders:read": True}}, InvalidClaims),
    "scp-number": ({"scp": 1}, InvalidClaims),
    "auth_time-string": ({"auth_time": "yesterday"}, InvalidClaims),
    "amr-number": ({"amr": 1}, InvalidClaims),
    "acr-list": ({"acr": ["1"]}, InvalidClaims),
    "cnf-string": ({"cnf": "thumbprint"}, InvalidClaims),
    # sender-constrained tokens need a proof of possession: RFC 9449 §7.2, RFC 8705 §3
    # (validated here without the request's proof or certificate: see test_attacks_dpop.py)
    "cnf-dpop-jkt": (
        {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
        InvalidTokenBinding,
    ),
    "cnf-mtls-x5t": (
        {"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}},
        InvalidTokenBinding,
    ),
    "cnf-jkt-not-a-thumbprint": ({"cnf": {"jkt": "thumbprint"}}, InvalidClaims),
    # RFC 7800 confirmation methods tokenguard cannot check: refused, never ignored
    "cnf-jwk": (
        {"cnf": {"jwk": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}}},
        UnsupportedToken,
    ),
    "cnf-kid": ({"cnf": {"kid": "key-1"}}, UnsupportedToken),
    "cnf-jku": ({"cnf": {"jku": "https://attacker.example/jwks"}}, UnsupportedToken),
}


def _resolve(overrides: dict[str, Any], server: AuthServer) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{issuer}", server.issuer).replace(
                "{ISSUER}", server.issuer.upper()
            )
        if isinstance(value, list):
            return [one(v) for v in value]
        if isinstance(value, dict):
            return {k: one(v) for k, v in value.items()}
        return value

    return {name: one(value) for name, value in overrides.items()}


@pytest.mark.parametrize("case", list(_CLAIM_CASES))
def test_claims_signed_by_the_issuer(server: AuthServer, check: Driver, case: str) -> None:
    """Validly signed by the issuer; only the named claim is wrong (see the comment above
    each group for its source)."""
    overrides, expected = _CLAIM_CASES[case]
    token = server.issue_jwt(claims=_resolve(overrides, server))
    guard = guard_for(server)
    rejected(check, guard, token, expected)
    # Claims are checked before any key is fetched (no traffic for a token that cannot pass).
    assert server.request_count("jwks") == 0


# Raw JSON text of a claim value, signed by the insider key.
_RAW_CASES: dict[str, tuple[str, bytes, type]] = {
    "exp-1e400 (overflows to inf)": ("exp", b"1e400", InvalidClaims),
    "exp--1e400": ("exp", b"-1e400", InvalidClaims),
    "exp-NaN": ("exp", b"NaN", MalformedToken),
    "exp-Infinity": ("exp", b"Infinity", MalformedToken),
    "exp--Infinity": ("exp", b"-Infinity", MalformedToken),
    "exp-5000-digit integer": ("exp", b"9" * 5000, MalformedToken),
    "exp-1e-400 (underflows to 0)": ("exp", b"1e-400", ExpiredToken),
    "exp--0": ("exp", b"-0", ExpiredToken),
    "nbf-1e400": ("nbf", b"1e400", InvalidClaims),
    "iat-1e400": ("iat", b"1e400", InvalidClaims),
    "iat-NaN": ("iat", b"NaN", MalformedToken),
    "aud-NaN": ("aud", b"NaN", MalformedToken),
    "exp-hex": ("exp", b"0x7fffffff", MalformedToken),
    "exp-leading-zero": ("exp", b"0" + str(NOW + 300).encode(), MalformedToken),
    "exp-plus-sign": ("exp", b"+" + str(NOW + 300).encode(), MalformedToken),
}


@pytest.mark.parametrize("case", list(_RAW_CASES))
def test_claims_as_raw_json_numbers(
    server: AuthServer, check: Driver, insider: Insider, case: str
) -> None:
    """RFC 7519 §2 (NumericDate), RFC 8259 §6 (no NaN/Infinity, no leading zeros or plus
    sign; numbers beyond IEEE 754 range are not interoperable). Validly signed (insider)."""
    name, text, expected = _RAW_CASES[case]
    claims = forge.claims_for(server.issuer, AUDIENCE)
    marker = b"__VALUE__"
    claims[name] = marker.decode()
    payload = forge.raw_json(claims).replace(b'"' + marker + b'"', text)
    guard = insider.guard(server)
    accepted(
        check, guard, insider.sign(insider.header(), forge.claims_for(server.issuer, AUDIENCE))
    )
    rejected(check, guard, insider.sign(insider.header(), payload), expected)


@pytest.mark.parametrize(
    "claim",
    ["nbf", "sub", "exp", "iat", "iss", "aud", "client_id", "jti", "scope", "scp", "amr", "cnf"],
)
def test_registered_claim_null(
    server: AuthServer, check: Driver, insider: Insider, claim: str
) -> None:
    """RFC 7519 §4.1 (each registered claim has a type; null is none of them), RFC 8725
    §3.10. Validly signed (insider) with ``"<claim>": null``: a type error, not "absent".
    (Regression: nbf/sub/scope: null used to pass as absent; fixed in 0a27c82.)"""
    claims: dict[str, Any] = forge.claims_for(server.issuer, AUDIENCE, nbf=NOW)
    claims[claim] = None
    rejected(check, insider.guard(server), insider.sign(insider.header(), claims), InvalidClaims)


# -- token type -------------------------------------------------------------------------------

_TYP_CASES: dict[str, tuple[Any, type, type | None]] = {
    # typ: (strict policy error, accept_plain_jwt policy error or None if it passes there)
    "JWT": ("JWT", UnsupportedToken, None),
    "jwt": ("jwt", UnsupportedToken, None),
    "application/jwt": ("application/jwt", UnsupportedToken, None),
    "absent": (None, UnsupportedToken, None),
    "id_token+jwt": ("id_token+jwt", UnsupportedToken, UnsupportedToken),
    "dpop+jwt": ("dpop+jwt", UnsupportedToken, UnsupportedToken),
    "logout+jwt": ("logout+jwt", UnsupportedToken, UnsupportedToken),
    "secevent+jwt": ("secevent+jwt", UnsupportedToken, UnsupportedToken),
    "token-introspection+jwt": ("token-introspection+jwt", UnsupportedToken, UnsupportedToken),
    "at+jwt with trailing space": ("at+jwt ", UnsupportedToken, UnsupportedToken),
    "at+jwt with NUL": ("at+jwt\u0000", UnsupportedToken, UnsupportedToken),
    "at+jwtx": ("at+jwtx", UnsupportedToken, UnsupportedToken),
    "application/at+jwt;x=1": ("application/at+jwt;x=1", UnsupportedToken, UnsupportedToken),
    "empty": ("", UnsupportedToken, UnsupportedToken),
    "number": (1, MalformedToken, MalformedToken),
    "list": (["at+jwt"], MalformedToken, MalformedToken),
    "object": ({"typ": "at+jwt"}, MalformedToken, MalformedToken),
}


@pytest.mark.parametrize("case", list(_TYP_CASES))
def test_token_type_confusion(server: AuthServer, check: Driver, case: str) -> None:
    """RFC 9068 §4 (refuse a typ other than at+jwt), RFC 8725 §2.8/§3.11 (explicit typing
    against cross-JWT confusion), RFC 7515 §4.1.9."""
    typ, strict_error, lenient_error = _TYP_CASES[case]
    if typ is None:
        token = server.issue_jwt(typ=None)
    else:
        token = server.issue_jwt(typ=None, header={"typ": typ})
    rejected(check, guard_for(server), token, strict_error)
    lenient = guard_for(server, accept_plain_jwt=True)
    if lenient_error is None:
        accepted(check, lenient, token)  # the documented opt-in for untyped servers
    else:
        rejected(check, lenient, token, lenient_error)


@pytest.mark.parametrize("typ", ["JWT", None])
def test_id_token_presented_as_access_token(
    server: AuthServer, check: Driver, typ: str | None
) -> None:
    """RFC 9068 §4 and RFC 8725 §2.8/§3.12 (cross-JWT confusion), OpenID Connect Core
    §2: an ID token (nonce, aud = client id, azp, typ JWT or none), signed by the issuer.
    Strict policy: refused by type; lenient (accept_plain_jwt): refused by audience."""
    id_token = server.issue_jwt(
        typ=typ,
        audience=server.client_id,
        claims={
            "nonce": "n-0S6_WzA2Mj",
            "azp": server.client_id,
            "auth_time": NOW - 10,
            "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
            "scope": None,
            "client_id": None,
        },
    )
    rejected(check, guard_for(server), id_token, UnsupportedToken)
    rejected(check, guard_for(server, accept_plain_jwt=True), id_token, InvalidAudience)


# -- crit / b64 / cty ------------------------------------------------------------------------

_HEADER_CASES: dict[str, dict[str, Any]] = {
    "crit-unknown": {"crit": ["urn:example:unknown"], "urn:example:unknown": True},
    "crit-exp": {"crit": ["exp"], "exp": NOW + 300},
    "crit-empty": {"crit": []},
    "crit-string": {"crit": "b64"},
    "crit-null": {"crit": "__null__"},
    "crit-b64": {"crit": ["b64"], "b64": False},
    "b64-false": {"b64": False},
    "b64-true": {"b64": True},
    "cty-JWT (nested)": {"cty": "JWT"},
    "cty-jwt (nested)": {"cty": "jwt"},
    "cty-application/jwt": {"cty": "application/jwt"},
    "cty-number": {"cty": 1},
}


@pytest.mark.parametrize("case", list(_HEADER_CASES))
def test_header_extensions(server: AuthServer, check: Driver, case: str) -> None:
    """RFC 7515 §4.1.11 (``crit``: understood or refused; an empty list is invalid), RFC
    7797 §6 (``b64``), RFC 7519 §5.2 and RFC 8725 §2.8 (nested JWTs, ``cty: JWT``).
    Signed by the issuer's real key."""
    header = dict(_HEADER_CASES[case])
    if header.get("crit") == "__null__":
        # issue_jwt drops None members; put a null crit over a genuine signature instead.
        genuine = server.issue_jwt()
        decoded = json.loads(forge.b64url_decode(forge.split(genuine)[0]))
        token = forge.reencode(genuine, header={**decoded, "crit": None})
    else:
        token = server.issue_jwt(header=header)
    rejected(check, guard_for(server), token, UnsupportedToken)
    assert server.request_count("jwks") == 0


def test_nested_jwt_carrying_a_genuine_token(
    server: AuthServer, check: Driver, insider: Insider
) -> None:
    """RFC 7519 §5.2/§7.2 step 8, RFC 8725 §2.8: an outer JWS (cty JWT), validly signed by
    a trusted key, whose payload is a genuine access token, is not unwrapped."""
    inner = server.issue_jwt().encode()
    outer = insider.sign(insider.header(cty="JWT"), inner)
    rejected(check, insider.guard(server), outer, UnsupportedToken)
    unsigned = forge.compact({"alg": "none", "cty": "JWT"}, inner)
    rejected(check, guard_for(server), unsigned, InvalidSignature)


# -- scope ---------------------------------------------------------------------------------------

_SCOPE_CASES: dict[str, dict[str, Any]] = {
    "missing": {"scope": "orders:read"},
    "absent": {"scope": None},
    "tab-delimited": {"scope": "orders:read\torders:admin"},
    "comma-delimited": {"scope": "orders:read,orders:admin"},
    "prefix": {"scope": "orders:admi"},
    "superstring": {"scope": "orders:admin2"},
    "upper-case": {"scope": "ORDERS:ADMIN"},
    "nbsp-delimited": {"scope": "orders:read\u00a0orders:admin"},
}


@pytest.mark.parametrize("case", list(_SCOPE_CASES))
def test_scope_escalation(server: AuthServer, check: Driver, case: str) -> None:
    """RFC 6749 §3.3 (space-delimited, case-sensitive scope tokens), RFC 6750 §3.1
    (insufficient_scope is 403), RFC 9068 §2.2.3."""
    guard = guard_for(server, required_scopes=["orders:admin"])
    token = server.issue_jwt(claims=_SCOPE_CASES[case])
    error = rejected(check, guard, token, InsufficientScope)
    assert error.scopes == ("orders:admin",)


def test_expired_token_without_scope_is_401_not_403(server: AuthServer, check: Driver) -> None:
    """RFC 6750 §3.1: validity first; a 403 would confirm to an attacker that a dead token
    was otherwise good."""
    guard = guard_for(server, required_scopes=["orders:admin"])
    rejected(check, guard, server.issue_jwt(lifetime=-3600), ExpiredToken)
