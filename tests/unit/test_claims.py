"""claims.py: typing of registered claims, time/audience/binding checks, TokenInfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pydantic
import pytest

from tokenguard.core.claims import (
    MAX_NUMERIC_DATE,
    Claims,
    check_audience,
    check_times,
    read_claims,
    to_token_info,
)
from tokenguard.core.jose import parse_json_object
from tokenguard.errors import (
    ExpiredToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    TokenNotYetValid,
)
from tokenguard.models import TokenInfo, freeze

NOW = 1_700_000_000.0


def claims(**raw: Any) -> Claims:
    return read_claims(raw)


# -- read_claims: types ---------------------------------------------------------------


def test_read_full_payload() -> None:
    raw = {
        "iss": "https://as.example",
        "sub": "alice",
        "client_id": "app",
        "username": "alice@example.com",
        "jti": "id-1",
        "token_type": "Bearer",
        "acr": "urn:mace:incommon:iap:silver",
        "aud": ["api", "other"],
        "scope": "read write",
        "exp": 2_000_000_000,
        "iat": 1_699_999_000,
        "nbf": 1_699_999_000.5,
        "auth_time": 1_699_998_000,
        "amr": ["pwd", "otp"],
        "cnf": {"jkt": "abc"},
        "custom": {"x": [1, 2]},
    }
    c = read_claims(raw)
    assert c.raw is raw
    assert (c.issuer, c.subject, c.client_id, c.username) == (
        "https://as.example",
        "alice",
        "app",
        "alice@example.com",
    )
    assert (c.token_id, c.token_type, c.acr) == ("id-1", "Bearer", "urn:mace:incommon:iap:silver")
    assert c.audience == ("api", "other")
    assert c.scopes == frozenset({"read", "write"})
    assert (c.exp, c.iat, c.nbf, c.auth_time) == (
        2_000_000_000,
        1_699_999_000,
        1_699_999_000.5,
        1_699_998_000,
    )
    assert c.amr == ("pwd", "otp")
    assert c.cnf == {"jkt": "abc"}


def test_read_empty_payload() -> None:
    c = read_claims({})
    assert c.issuer is c.subject is c.exp is c.amr is c.cnf is c.audience is None
    assert c.scopes == frozenset()


@pytest.mark.parametrize(
    "name", ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "scp", "amr", "cnf"]
)
def test_null_registered_claims_are_refused(name: str) -> None:
    # RFC 7519 §4.1: a present claim has its type; null is not "absent".
    with pytest.raises(InvalidClaims):
        read_claims({name: None})


def test_null_custom_claims_are_kept() -> None:
    assert read_claims({"x-custom": None}).raw == {"x-custom": None}


@pytest.mark.parametrize(
    "name", ["iss", "sub", "client_id", "username", "jti", "token_type", "acr"]
)
@pytest.mark.parametrize("value", [1, 1.5, True, False, ["a"], {"a": 1}])
def test_string_claims_wrong_type(name: str, value: Any) -> None:
    with pytest.raises(InvalidClaims, match=f"The {name} claim must be a string"):
        read_claims({name: value})


@pytest.mark.parametrize("name", ["exp", "iat", "nbf", "auth_time"])
@pytest.mark.parametrize("value", [True, False, "1700000000", ["1"], {"t": 1}])
def test_numeric_dates_wrong_type(name: str, value: Any) -> None:
    with pytest.raises(InvalidClaims, match=f"The {name} claim must be a number"):
        read_claims({name: value})


@pytest.mark.parametrize("name", ["exp", "iat", "nbf", "auth_time"])
@pytest.mark.parametrize(
    "value", [-1, -0.5, MAX_NUMERIC_DATE + 1, MAX_NUMERIC_DATE + 0.5, 10**30, float("inf"), 1e300]
)
def test_numeric_dates_out_of_range(name: str, value: Any) -> None:
    with pytest.raises(InvalidClaims, match=f"The {name} claim is out of range"):
        read_claims({name: value})


def test_numeric_date_inf_from_json() -> None:
    raw = parse_json_object(b'{"exp":1e400}', "payload")
    with pytest.raises(InvalidClaims, match="out of range"):
        read_claims(raw)


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.25, MAX_NUMERIC_DATE])
def test_numeric_dates_in_range(value: float) -> None:
    assert claims(exp=value).exp == value


def test_numeric_date_huge_integer_from_json() -> None:
    # An integer beyond float range (HEAD 58de5d2 let math.isfinite raise OverflowError).
    raw = parse_json_object(b'{"exp":1' + b"0" * 400 + b"}", "payload")
    with pytest.raises(InvalidClaims, match="out of range"):
        read_claims(raw)


@pytest.mark.parametrize(
    ("aud", "expected"),
    [("api", ("api",)), (["api"], ("api",)), (["a", "b"], ("a", "b")), ([], ()), ("", ("",))],
)
def test_audience_shapes(aud: Any, expected: tuple[str, ...]) -> None:
    assert claims(aud=aud).audience == expected


@pytest.mark.parametrize("aud", [1, True, {"a": 1}, ["a", 1], ["a", None], [["a"]]])
def test_audience_wrong_type(aud: Any) -> None:
    with pytest.raises(InvalidClaims, match="aud claim must be a string or an array of strings"):
        claims(aud=aud)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"scope": "read write"}, {"read", "write"}),
        ({"scope": "  read   write  "}, {"read", "write"}),
        ({"scope": ""}, set()),
        ({"scp": ["read", "write"]}, {"read", "write"}),
        ({"scp": "read write"}, {"read", "write"}),
        ({"scp": ["read write", "admin"]}, {"read", "write", "admin"}),
        ({"scope": "read", "scp": ["write"]}, {"read", "write"}),
        ({"scope": "read", "scp": "read"}, {"read"}),
        ({"scope": ["read", "write"]}, {"read", "write"}),
    ],
)
def test_scopes(raw: dict[str, Any], expected: set[str]) -> None:
    assert read_claims(raw).scopes == frozenset(expected)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ({"scope": 1}, "scope"),
        ({"scope": True}, "scope"),
        ({"scope": ["a", 2]}, "scope"),
        ({"scope": {"a": 1}}, "scope"),
        ({"scp": 1}, "scp"),
        ({"scp": [None]}, "scp"),
        ({"scope": "ok", "scp": [1]}, "scp"),
    ],
)
def test_scopes_wrong_type(raw: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidClaims, match=f"The {name} claim must be"):
        read_claims(raw)


def test_amr() -> None:
    assert claims(amr=["pwd"]).amr == ("pwd",)
    assert claims(amr="pwd").amr == ("pwd",)
    assert claims(amr=[]).amr == ()
    with pytest.raises(InvalidClaims, match="amr claim"):
        claims(amr=[1])
    with pytest.raises(InvalidClaims, match="amr claim"):
        claims(amr=1)


@pytest.mark.parametrize("cnf", ["jkt", 1, ["x"], True])
def test_cnf_must_be_object(cnf: Any) -> None:
    with pytest.raises(InvalidClaims, match="cnf claim must be an object"):
        claims(cnf=cnf)


# -- check_times --------------------------------------------------------------------------


def times(**raw: Any) -> Claims:
    return read_claims(raw)


def test_exp_boundary_without_leeway() -> None:
    c = times(exp=NOW)
    check_times(c, NOW - 0.001, 0, require_exp=True, require_iat=False)
    with pytest.raises(ExpiredToken):  # RFC 7519 §4.1.4: valid only *before* exp
        check_times(c, NOW, 0, require_exp=True, require_iat=False)
    with pytest.raises(ExpiredToken):
        check_times(c, NOW + 1, 0, require_exp=True, require_iat=False)


def test_exp_boundary_with_leeway() -> None:
    c = times(exp=NOW)
    check_times(c, NOW + 59.999, 60, require_exp=True, require_iat=False)
    with pytest.raises(ExpiredToken) as info:
        check_times(c, NOW + 60, 60, require_exp=True, require_iat=False)
    assert info.value.description == "The access token has expired"


def test_exp_required() -> None:
    check_times(times(), NOW, 0, require_exp=False, require_iat=False)
    with pytest.raises(InvalidClaims, match="no exp claim"):
        check_times(times(), NOW, 0, require_exp=True, require_iat=False)


def test_nbf_boundaries() -> None:
    c = times(nbf=NOW)
    check_times(c, NOW, 0, require_exp=False, require_iat=False)  # at nbf: valid
    with pytest.raises(TokenNotYetValid):
        check_times(c, NOW - 0.001, 0, require_exp=False, require_iat=False)
    check_times(c, NOW - 30, 30, require_exp=False, require_iat=False)
    with pytest.raises(TokenNotYetValid) as info:
        check_times(c, NOW - 30.001, 30, require_exp=False, require_iat=False)
    assert info.value.description == "The access token is not yet valid"


def test_iat_in_future() -> None:
    c = times(iat=NOW)
    check_times(c, NOW, 0, require_exp=False, require_iat=True)
    check_times(c, NOW - 10, 10, require_exp=False, require_iat=True)
    with pytest.raises(TokenNotYetValid, match="issued in the future"):
        check_times(c, NOW - 10.5, 10, require_exp=False, require_iat=True)


def test_iat_required() -> None:
    check_times(times(exp=NOW + 10), NOW, 0, require_exp=True, require_iat=False)
    with pytest.raises(InvalidClaims, match="no iat claim"):
        check_times(times(exp=NOW + 10), NOW, 0, require_exp=True, require_iat=True)


def test_iat_in_the_past_is_fine() -> None:
    check_times(times(iat=0, exp=NOW + 1), NOW, 0, require_exp=True, require_iat=True)


def test_expired_reported_before_not_yet_valid() -> None:
    with pytest.raises(ExpiredToken):
        check_times(
            times(exp=NOW - 100, nbf=NOW + 100), NOW, 0, require_exp=True, require_iat=False
        )


# -- check_audience / check_binding -----------------------------------------------------


@pytest.mark.parametrize("required", [True, False])
def test_present_empty_audience_names_nobody(required: bool) -> None:
    # Issue 14 rule 4: "aud": [] is an answer naming no audience, not a missing aud, so it
    # is refused even where a missing aud is tolerated (introspection answers).
    with pytest.raises(InvalidAudience) as info:
        check_audience(times(aud=[]), "api", required=required)
    assert info.value.description == "The access token is not intended for this audience"


def test_audience() -> None:
    check_audience(times(aud="api"), "api", required=True)
    check_audience(times(aud=["x", "api"]), "api", required=True)
    check_audience(times(), "api", required=False)
    with pytest.raises(InvalidAudience, match="no audience"):
        check_audience(times(), "api", required=True)
    with pytest.raises(InvalidAudience) as info:
        check_audience(times(aud=["x", "API"]), "api", required=False)
    assert info.value.description == "The access token is not intended for this audience"


@pytest.mark.parametrize("aud", ["ap", "api ", "https://api", ["apix"]])
def test_audience_exact_match_only(aud: Any) -> None:
    with pytest.raises(InvalidAudience):
        check_audience(times(aud=aud), "api", required=False)
    with pytest.raises(InvalidAudience):
        check_audience(times(aud=aud), "api", required=True)


# -- to_token_info ------------------------------------------------------------------------


RAW = {
    "iss": "https://as.example",
    "sub": "alice",
    "client_id": "app",
    "aud": ["api"],
    "scope": "read write",
    "exp": 2_000_000_000,
    "iat": 1_700_000_000,
    "nbf": 1_700_000_000.5,
    "auth_time": 1_699_000_000,
    "amr": ["pwd"],
    "acr": "1",
    "jti": "j",
    "email": "alice@secret.example",
    "nested": {"list": [1, {"deep": "value"}]},
    "cnf": {"jkt": "thumb"},
}


@pytest.fixture
def info() -> TokenInfo:
    return to_token_info(
        read_claims(dict(RAW)), source="jwt", issuer="https://as.example", token_type="at+jwt"
    )


def test_token_info_fields(info: TokenInfo) -> None:
    assert info.active is True
    assert info.subject == "alice"
    assert info.client_id == "app"
    assert info.scopes == frozenset({"read", "write"})
    assert info.audience == ("api",)
    assert info.issuer == "https://as.example"
    assert info.token_type == "at+jwt"
    assert info.token_id == "j"
    assert info.acr == "1"
    assert info.amr == ("pwd",)
    assert info.source == "jwt"
    assert info.cached is False
    assert info.expires_at == datetime(2033, 5, 18, 3, 33, 20, tzinfo=UTC)
    assert info.issued_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert info.not_before == datetime.fromtimestamp(1_700_000_000, UTC) + timedelta(
        milliseconds=500
    )
    assert info.auth_time == datetime.fromtimestamp(1_699_000_000, UTC)
    for value in (info.expires_at, info.issued_at, info.not_before, info.auth_time):
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert info.claims["email"] == "alice@secret.example"
    assert info.cnf == {"jkt": "thumb"}
    assert info.has_scopes("read")
    assert info.has_scopes("read", "write")
    assert not info.has_scopes("read", "admin")


def test_token_info_without_times() -> None:
    info = to_token_info(read_claims({}), source="introspection", issuer="i", token_type=None)
    assert info.expires_at is info.issued_at is info.not_before is info.auth_time is None
    assert info.cnf is None
    assert info.amr is None


def test_token_info_is_frozen(info: TokenInfo) -> None:
    with pytest.raises(pydantic.ValidationError):
        info.subject = "mallory"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        info.scopes = frozenset({"admin"})  # type: ignore[misc]
    assert info.subject == "alice"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda i: i.claims.__setitem__("sub", "mallory"),
        lambda i: i.claims.__delitem__("sub"),
        lambda i: i.claims["nested"].__setitem__("x", 1),
        lambda i: i.claims["nested"]["list"].append(3),
        lambda i: i.claims["nested"]["list"][1].__setitem__("deep", "changed"),
        lambda i: i.cnf.__setitem__("jkt", "other"),
        lambda i: i.scopes.add("admin"),
    ],
)
def test_token_info_claims_read_only(info: TokenInfo, mutate: Any) -> None:
    with pytest.raises((TypeError, AttributeError)):
        mutate(info)
    assert info.claims["sub"] == "alice"
    assert info.claims["nested"]["list"][1]["deep"] == "value"


def test_token_info_takes_over_the_raw_dict() -> None:
    # The parsed dict is handed over, not copied (no one else holds it), and wrapped
    # read-only at every level.
    flat = {"sub": "alice"}
    info = to_token_info(read_claims(flat), source="jwt", issuer="i", token_type=None)
    assert info.claims == flat
    with pytest.raises(TypeError):
        info.claims["sub"] = "mallory"  # type: ignore[index]
    nested = {"sub": "alice", "nested": {"a": [1]}}
    info = to_token_info(read_claims(nested), source="jwt", issuer="i", token_type=None)
    assert info.claims["nested"]["a"] == (1,)
    with pytest.raises(TypeError):
        info.claims["nested"]["a"] = 2  # type: ignore[index]


def test_token_info_model_dump(info: TokenInfo) -> None:
    dumped = info.model_dump()
    assert dumped["claims"] == {**RAW, "nested": {"list": [1, {"deep": "value"}]}}
    assert isinstance(dumped["claims"], dict)
    assert isinstance(dumped["claims"]["nested"]["list"], list)
    assert dumped["cnf"] == {"jkt": "thumb"}
    assert dumped["subject"] == "alice"
    as_json = info.model_dump_json()
    assert '"email":"alice@secret.example"' in as_json


def test_token_info_model_dump_without_cnf() -> None:
    info = to_token_info(read_claims({"sub": "a"}), source="jwt", issuer="i", token_type=None)
    assert info.model_dump()["cnf"] is None


def test_token_info_repr_has_no_claim_values(info: TokenInfo) -> None:
    text = repr(info)
    assert text.startswith("TokenInfo(source='jwt', issuer='https://as.example'")
    assert "alice@secret.example" not in text
    assert "deep" not in text
    assert "thumb" not in text
    assert "pwd" not in text
    assert str(info) == text
    assert "cached=False" in text
    assert "['read', 'write']" in text


def test_require_scopes(info: TokenInfo) -> None:
    info.require_scopes("read")
    info.require_scopes()
    with pytest.raises(InsufficientScope) as err:
        info.require_scopes("read", "admin")
    assert err.value.status_code == 403
    assert "admin" in err.value.scopes


def test_freeze_scalars_and_containers() -> None:
    frozen = freeze({"a": [1, {"b": [2]}], "c": "x"})
    assert isinstance(frozen, MappingProxyType)
    assert frozen["a"] == (1, MappingProxyType({"b": (2,)}))
    assert freeze(5) == 5
