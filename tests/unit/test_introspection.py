"""introspection.py: reading RFC 7662 responses and checking them against a policy."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tokenguard.client_auth import BearerToken, ClientSecretBasic, ClientSecretPost
from tokenguard.config import Policy
from tokenguard.core.binding import binding_rules
from tokenguard.core.exchange import HttpFailure, HttpResponse
from tokenguard.core.introspection import (
    IntrospectionRecord,
    build_request,
    check_record,
    read_response,
)
from tokenguard.errors import (
    ExpiredToken,
    InactiveToken,
    InvalidAudience,
    InvalidClaims,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
    ValidationUnavailable,
)

ISS = "https://as.example"
AUD = "https://api.example"
NOW = 1_700_000_000.0
TOKEN = "opaque-token-value-Zx9"
SECRET = "client-secret-value-Q7"


def response(body: Any, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status=status, headers={"content-type": content_type}, body=raw)


# -- read_response ----------------------------------------------------------------------------


def test_active_response() -> None:
    record = read_response(
        response({"active": True, "sub": "alice", "scope": "read", "aud": AUD}), NOW
    )
    assert isinstance(record, IntrospectionRecord)
    assert record.active is True
    assert record.fetched_at == NOW
    assert record.claims is not None
    assert record.claims.subject == "alice"
    assert record.claims.scopes == {"read"}


@pytest.mark.parametrize(
    "body",
    [
        {"active": False},
        {"active": "true"},
        {"active": 1},
        {"active": None},
        {"active": [True]},
        {},
        {"sub": "alice", "scope": "read"},  # missing active
        {"active": False, "exp": "garbage"},  # inactive: claims not even read
    ],
)
def test_not_true_is_inactive(body: dict[str, Any]) -> None:
    record = read_response(response(body), NOW)
    assert record == IntrospectionRecord(active=False, claims=None, fetched_at=NOW)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/token-introspection+json",
    ],
)
def test_json_content_types(content_type: str) -> None:
    record = read_response(response({"active": True}, content_type=content_type), NOW)
    assert isinstance(record, IntrospectionRecord)
    assert record.active


@pytest.mark.parametrize("status", [201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503])
def test_non_200_is_unavailable(status: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenguard.introspection")
    result = read_response(response({"active": True}, status=status), NOW)
    assert isinstance(result, ValidationUnavailable)
    assert result.status_code == 503
    assert result.description == "The authorization server could not answer"
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.ERROR if status in (401, 403) else logging.WARNING]


def test_401_logged_as_credentials_problem(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tokenguard.introspection")
    read_response(response({}, status=401), NOW)
    assert "refused our client credentials (HTTP 401)" in caplog.text


def test_transport_failure_is_unavailable() -> None:
    result = read_response(HttpFailure("timeout"), NOW)
    assert isinstance(result, ValidationUnavailable)
    assert result.description == "The authorization server could not be reached"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Login</body></html>", "text/html"),
        (b'{"active": true}', "text/plain"),
        (b'{"active": true}', ""),
        (b'{"active": true}', "application/jwt"),
        (b'{"active": true}', "application/token-introspection+jwt"),
        (b"<html>", "application/json"),
        (b"[true]", "application/json"),
        (b'"active"', "application/json"),
        (b"true", "application/json"),
        (b'{"active": true, "active": false}', "application/json"),
        (b'{"active": true, "exp": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"", "application/json"),
    ],
)
def test_nonsense_is_unavailable(body: bytes, content_type: str) -> None:
    result = read_response(response(body, content_type=content_type), NOW)
    assert isinstance(result, ValidationUnavailable)
    assert result.description == "The authorization server answered nonsense"


def test_missing_content_type_is_unavailable() -> None:
    result = read_response(HttpResponse(200, {}, b'{"active": true}'), NOW)
    assert isinstance(result, ValidationUnavailable)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"active": True, "exp": "1700000000"}, "exp claim must be a number"),
        ({"active": True, "exp": True}, "exp claim must be a number"),
        ({"active": True, "iss": 1}, "iss claim must be a string"),
        ({"active": True, "aud": [1]}, "aud claim"),
        ({"active": True, "scope": 5}, "scope claim"),
        ({"active": True, "token_type": ["Bearer"]}, "token_type claim"),
        ({"active": True, "cnf": "x"}, "cnf claim must be an object"),
        ({"active": True, "exp": -5}, "exp claim is out of range"),
    ],
)
def test_ill_typed_active_response_is_invalid_claims(body: dict[str, Any], message: str) -> None:
    result = read_response(response(body), NOW)
    assert isinstance(result, InvalidClaims)
    assert message in result.description
    assert result.status_code == 401


# -- check_record -----------------------------------------------------------------------------


def record(**claims: Any) -> IntrospectionRecord:
    result = read_response(response({"active": True, **claims}), NOW)
    assert isinstance(result, IntrospectionRecord)
    return result


def check(rec: IntrospectionRecord, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "issuer": ISS,
        "audience": AUD,
        "leeway": 0.0,
        "require_audience": False,
        "now": NOW,
    }
    legacy = overrides.pop("allow_sender_constrained", False)
    options["binding"] = binding_rules(
        Policy(name="p", audience=AUD, allow_sender_constrained=legacy)
    )
    options.update(overrides)
    return check_record(rec, **options)


def test_check_minimal_active() -> None:
    claims = check(record())
    assert claims.subject is None


def test_check_full_active() -> None:
    claims = check(
        record(iss=ISS, aud=[AUD, "x"], exp=NOW + 60, nbf=NOW - 5, token_type="Bearer", sub="a")
    )
    assert claims.subject == "a"


def test_check_inactive() -> None:
    with pytest.raises(InactiveToken) as info:
        check(IntrospectionRecord(active=False, claims=None, fetched_at=NOW))
    assert info.value.status_code == 401
    with pytest.raises(InactiveToken):
        check(IntrospectionRecord(active=True, claims=None, fetched_at=NOW))


@pytest.mark.parametrize(
    "iss", ["https://evil.example", "https://as.example/", "HTTPS://as.example"]
)
def test_check_issuer_mismatch(iss: str) -> None:
    with pytest.raises(UntrustedIssuer):
        check(record(iss=iss))


def test_check_audience() -> None:
    with pytest.raises(InvalidAudience):
        check(record(aud="https://other.example"))
    check(record())  # no aud, not required
    with pytest.raises(InvalidAudience, match="no audience"):
        check(record(), require_audience=True)
    check(record(aud=AUD), require_audience=True)


def test_check_times() -> None:
    with pytest.raises(ExpiredToken):
        check(record(exp=NOW))
    check(record(exp=NOW), leeway=1)
    with pytest.raises(TokenNotYetValid):
        check(record(nbf=NOW + 10))
    check(record(nbf=NOW + 10), leeway=10)
    # An iat in the future is refused here too (checked whenever present).
    with pytest.raises(TokenNotYetValid):
        check(record(iat=NOW + 100))


@pytest.mark.parametrize(
    "token_type",
    ["Bearer", "bearer", "BEARER", "access_token", "urn:ietf:params:oauth:token-type:access_token"],
)
def test_bearer_token_types(token_type: str) -> None:
    check(record(token_type=token_type))


@pytest.mark.parametrize(
    "token_type",
    [
        "refresh_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:id_token",
        "N_A",
        "mac",
        "",
    ],
)
def test_non_bearer_token_types_refused(token_type: str) -> None:
    with pytest.raises(UnsupportedToken, match="not a bearer access token"):
        check(record(token_type=token_type))
    with (
        pytest.raises(UnsupportedToken),
        pytest.warns(DeprecationWarning, match="allow_sender_constrained"),
    ):
        check(record(token_type=token_type), allow_sender_constrained=True)


JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # RFC 7638 §3.1's example thumbprint


def test_dpop_token_type() -> None:
    # RFC 9449 §6.2: token_type DPoP comes with the cnf.jkt the proof is checked against.
    with pytest.raises(UnsupportedToken, match="not a bearer access token"):
        check(record(token_type="DPoP"))
    with pytest.raises(UnsupportedToken, match="not a bearer access token"):
        check(record(token_type="DPoP", cnf={"x5t#S256": JKT}))
    assert check(record(token_type="DPoP", cnf={"jkt": JKT})).cnf == {"jkt": JKT}
    with pytest.warns(DeprecationWarning, match="allow_sender_constrained"):
        claims = check(record(token_type="DPoP"), allow_sender_constrained=True)
    assert claims.cnf is None


def test_cnf_binding() -> None:
    # Shape only: whether the request proves it is checked after validation.
    assert check(record(token_type="Bearer", cnf={"x5t#S256": JKT})).cnf == {"x5t#S256": JKT}
    with pytest.raises(InvalidClaims, match="x5t#S256 member is invalid"):
        check(record(cnf={"x5t#S256": "abc"}))
    with pytest.raises(UnsupportedToken, match="confirmation method"):
        check(record(cnf={"jwk": {"kty": "EC"}}))


def test_checks_apply_to_the_asking_policy_only() -> None:
    rec = record(iss=ISS, aud="api-a")
    check(rec, audience="api-a")
    with pytest.raises(InvalidAudience):
        check(rec, audience="api-b")


# -- build_request ------------------------------------------------------------------------------


def test_build_request_basic() -> None:
    request = build_request(
        f"{ISS}/introspect", TOKEN, ClientSecretBasic("rs", SECRET), issuer=ISS, max_bytes=4096
    )
    assert request.method == "POST"
    assert request.url == f"{ISS}/introspect"
    assert request.max_bytes == 4096
    assert request.form == {"token": TOKEN, "token_type_hint": "access_token"}
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"].startswith("Basic ")
    for text in (repr(request), str(request)):
        assert TOKEN not in text
        assert SECRET not in text
        assert "Basic" not in text
    assert f"{ISS}/introspect" in repr(request)


def test_build_request_post_and_bearer() -> None:
    request = build_request(
        f"{ISS}/i", TOKEN, ClientSecretPost("rs", SECRET), issuer=ISS, max_bytes=1024
    )
    assert request.form is not None
    assert request.form["client_secret"] == SECRET
    assert SECRET not in repr(request)
    assert TOKEN not in repr(request)
    request = build_request(f"{ISS}/i", TOKEN, BearerToken(SECRET), issuer=ISS, max_bytes=1024)
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(request)


def test_huge_integer_exp_in_response() -> None:
    # Must come back as an error result, never escape read_response (and Fetch.complete).
    body = b'{"active": true, "exp": 1' + b"0" * 400 + b"}"
    result = read_response(response(body), NOW)
    assert isinstance(result, InvalidClaims)


def test_null_members_of_a_response_count_as_absent() -> None:
    # Unlike in a token, a server serialising a missing member as null means "absent".
    record = read_response(response({"active": True, "username": None, "aud": None}), 100.0)
    assert isinstance(record, IntrospectionRecord)
    assert record.claims is not None
    assert record.claims.username is None
    assert record.claims.audience is None
