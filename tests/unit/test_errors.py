"""errors.py: statuses, error codes, RFC 6750 WWW-Authenticate values, safe descriptions."""

from __future__ import annotations

import copy
import pickle

import pytest

from tokenguard import errors
from tokenguard.errors import (
    Challenge,
    ConfigurationError,
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidAudience,
    InvalidClaims,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    InvalidTokenBinding,
    MalformedToken,
    MissingToken,
    SecurityEventError,
    TokenGuardError,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
    UseDPoPNonce,
    ValidationUnavailable,
)

INVALID_TOKEN_CLASSES = [
    InvalidToken,
    MalformedToken,
    UnsupportedToken,
    InvalidSignature,
    ExpiredToken,
    TokenNotYetValid,
    InvalidAudience,
    UntrustedIssuer,
    InvalidClaims,
    InactiveToken,
    InvalidTokenBinding,
]


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (TokenGuardError, 500, "server_error"),
        (InvalidRequest, 400, "invalid_request"),
        (MissingToken, 401, None),
        *[(cls, 401, "invalid_token") for cls in INVALID_TOKEN_CLASSES],
        (InvalidDPoPProof, 401, "invalid_dpop_proof"),
        (ValidationUnavailable, 503, "temporarily_unavailable"),
        (ConfigurationError, 500, "server_error"),
    ],
)
def test_status_and_error(cls: type[TokenGuardError], status: int, code: str | None) -> None:
    error = cls()
    assert error.status_code == status
    assert error.error == code
    assert isinstance(error, TokenGuardError)
    assert error.description == cls.default_description
    assert str(error) == error.description
    assert repr(error) == f"{cls.__name__}({error.description!r})"


def test_insufficient_scope_status() -> None:
    error = InsufficientScope(["write", "read", "write"])
    assert error.status_code == 403
    assert error.error == "insufficient_scope"
    assert error.scopes == ("read", "write")
    assert repr(error) == "InsufficientScope(scopes=('read', 'write'))"
    assert error.description == "The access token lacks the required scope"


def test_security_event_error() -> None:
    """RFC 8935 §2.3: the err code travels with the error; 401 for authentication."""
    error = SecurityEventError("invalid_key", "No key verifies the event")
    assert (error.status_code, error.err, error.description) == (
        400,
        "invalid_key",
        "No key verifies the event",
    )
    assert repr(error) == "SecurityEventError('invalid_key', 'No key verifies the event')"
    assert SecurityEventError("authentication_failed").status_code == 401


def test_validation_unavailable_retry_after() -> None:
    assert ValidationUnavailable().headers() == {}
    assert ValidationUnavailable(retry_after=7).headers() == {"Retry-After": "7"}


def test_every_public_error_is_tested() -> None:
    tested = {*INVALID_TOKEN_CLASSES, TokenGuardError, InvalidRequest, MissingToken}
    tested |= {ValidationUnavailable, ConfigurationError, InsufficientScope}
    tested |= {InsufficientUserAuthentication}
    tested |= {InvalidDPoPProof, UseDPoPNonce, Challenge}
    tested |= {SecurityEventError}
    public = {getattr(errors, name) for name in errors.__all__}
    assert public == tested


@pytest.mark.parametrize("cls", INVALID_TOKEN_CLASSES)
def test_invalid_token_subclasses(cls: type[InvalidToken]) -> None:
    assert issubclass(cls, InvalidToken)
    assert cls().default_description != ""


# -- WWW-Authenticate -------------------------------------------------------------------


def test_invalid_token_challenge() -> None:
    error = ExpiredToken()
    assert error.www_authenticate() == (
        'Bearer error="invalid_token", error_description="The access token has expired"'
    )
    assert error.www_authenticate(realm="api") == (
        'Bearer realm="api", error="invalid_token", '
        'error_description="The access token has expired"'
    )


def test_invalid_request_challenge() -> None:
    assert InvalidRequest("Bad header").www_authenticate(realm="r") == (
        'Bearer realm="r", error="invalid_request", error_description="Bad header"'
    )


def test_missing_token_challenge_has_no_error() -> None:
    # RFC 6750 §3.1: no error code when the request carries no credentials.
    assert MissingToken().www_authenticate() == "Bearer"
    assert MissingToken().www_authenticate(realm="example") == 'Bearer realm="example"'


@pytest.mark.parametrize("cls", [ValidationUnavailable, ConfigurationError, TokenGuardError])
def test_non_bearer_errors_have_no_error_params(cls: type[TokenGuardError]) -> None:
    assert cls().www_authenticate() == "Bearer"
    assert cls().www_authenticate(realm="x") == 'Bearer realm="x"'
    assert "temporarily_unavailable" not in cls().www_authenticate()


def test_insufficient_scope_challenge() -> None:
    error = InsufficientScope(["write", "read"])
    assert error.www_authenticate(realm="api") == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The access token lacks the required scope", scope="read write"'
    )


def test_insufficient_scope_without_scopes() -> None:
    assert InsufficientScope([]).www_authenticate() == (
        'Bearer error="insufficient_scope", '
        'error_description="The access token lacks the required scope"'
    )


def test_insufficient_scope_custom_description() -> None:
    error = InsufficientScope(["a"], "Need a")
    assert error.description == "Need a"
    assert 'error_description="Need a", scope="a"' in error.www_authenticate()


# -- sanitising ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ('say "hi"', "say  hi "),
        ("back\\slash", "back slash"),
        ("line\nbreak\r\n", "line break  "),
        ("tab\there", "tab here"),
        ("naïve résumé ✓", "na ve r sum   "),
        ("nul\x00del\x7f", "nul del "),
        ("ok: !#$%&'()*+,-./;<=>?@[]^_`{|}~", "ok: !#$%&'()*+,-./;<=>?@[]^_`{|}~"),
    ],
)
def test_description_sanitised(description: str, expected: str) -> None:
    error = InvalidToken(description)
    assert error.description == expected
    assert str(error) == expected
    header = error.www_authenticate()
    assert header == f'Bearer error="invalid_token", error_description="{expected}"'
    assert "\n" not in header
    assert "\r" not in header


def test_every_description_char_is_rfc6750_safe() -> None:
    every = "".join(chr(c) for c in range(0x110))
    desc = InvalidToken(every).description
    assert len(desc) == len(every)
    assert all(ch == " " or (0x20 <= ord(ch) <= 0x7E and ch not in '"\\') for ch in desc)


def test_empty_description_uses_default() -> None:
    assert InvalidToken("").description == "The access token is invalid"
    assert InvalidToken(None).description == "The access token is invalid"


@pytest.mark.parametrize(
    ("realm", "expected"),
    [
        ('my "realm"', 'Bearer realm="my  realm "'),
        ("back\\slash", 'Bearer realm="back slash"'),
        ("new\nline", 'Bearer realm="new line"'),
        ("ünï", 'Bearer realm=" n "'),
        ("", 'Bearer realm=""'),
    ],
)
def test_realm_sanitised(realm: str, expected: str) -> None:
    assert MissingToken().www_authenticate(realm=realm) == expected


def test_repr_sanitised() -> None:
    assert repr(MalformedToken('a"b\n')) == "MalformedToken('a b ')"


def test_errors_copy_and_pickle() -> None:
    # The engine raises copies of shared errors; copies keep class and description.
    for error in (InvalidClaims("The exp claim must be a number"), ValidationUnavailable("x")):
        clone = copy.copy(error)
        assert type(clone) is type(error)
        assert clone.description == error.description
        back = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
        assert type(back) is type(error)
        assert back.description == error.description
    scope = InsufficientScope(["b", "a"])
    for clone in (copy.copy(scope), pickle.loads(pickle.dumps(scope))):  # noqa: S301
        assert clone.scopes == ("a", "b")
        assert clone.description == scope.description


def test_insufficient_user_authentication_challenge() -> None:
    # RFC 9470 §3: the error code and the requirements as auth-params, acr_values in the
    # order of preference given.
    error = InsufficientUserAuthentication(["phr", "mfa"], 300)
    assert error.status_code == 401
    assert error.error == "insufficient_user_authentication"
    assert error.acr_values == ("phr", "mfa")
    assert error.www_authenticate(realm="api") == (
        'Bearer realm="api", error="insufficient_user_authentication", '
        'error_description="A stronger or more recent user authentication is required", '
        'acr_values="phr mfa", max_age="300"'
    )
    assert repr(error) == "InsufficientUserAuthentication(acr_values=('phr', 'mfa'), max_age=300)"
    only_age = InsufficientUserAuthentication(None, 0, "A more recent user authentication")
    assert only_age.www_authenticate().endswith('max_age="0"')
    assert "acr_values" not in only_age.www_authenticate()
    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):  # noqa: S301
        assert clone.acr_values == ("phr", "mfa")
        assert clone.max_age == 300


def test_resource_metadata_in_challenge() -> None:
    # RFC 9728 §5.1: the metadata URL goes last, for every kind of challenge.
    url = "https://api.example.com/.well-known/oauth-protected-resource"
    assert MissingToken().www_authenticate(realm="api", resource_metadata=url) == (
        f'Bearer realm="api", resource_metadata="{url}"'
    )
    challenge = InsufficientScope(["a"]).www_authenticate(resource_metadata=url)
    assert challenge.endswith(f'scope="a", resource_metadata="{url}"')
    assert (
        ExpiredToken().www_authenticate(resource_metadata='x"y').endswith('resource_metadata="x y"')
    )


# -- DPoP challenges (RFC 9449 §7.1, §9) ------------------------------------------------------

BOTH = Challenge(("Bearer", "DPoP"), ("ES256", "PS256"), "Bearer")


def _with(error: TokenGuardError, challenge: Challenge) -> TokenGuardError:
    error.challenge = challenge
    return error


def test_use_dpop_nonce() -> None:
    error = UseDPoPNonce("n0nce-1")
    assert (error.status_code, error.error, error.nonce) == (401, "use_dpop_nonce", "n0nce-1")
    assert isinstance(error, InvalidToken)
    assert repr(error) == (
        "UseDPoPNonce('A DPoP proof with the nonce provided by this server is required')"
    )
    # Without a policy's challenge, a DPoP error still goes in a DPoP challenge.
    assert error.headers() == {
        "WWW-Authenticate": 'Bearer, DPoP error="use_dpop_nonce", '
        'error_description="A DPoP proof with the nonce provided by this server is required"',
        "DPoP-Nonce": "n0nce-1",
    }
    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):  # noqa: S301
        assert clone.nonce == "n0nce-1"


def test_bearer_and_dpop_challenges() -> None:
    # RFC 9449 §7.1-7.2: both schemes offered; the error goes in the scheme the request used.
    assert _with(MissingToken(), BOTH).www_authenticate() == 'Bearer, DPoP algs="ES256 PS256"'
    assert _with(MissingToken(), BOTH).www_authenticate(realm="api") == (
        'Bearer realm="api", DPoP realm="api", algs="ES256 PS256"'
    )
    assert _with(ExpiredToken(), BOTH).www_authenticate() == (
        'Bearer error="invalid_token", error_description="The access token has expired", '
        'DPoP algs="ES256 PS256"'
    )
    dpop = Challenge(("Bearer", "DPoP"), ("ES256",), "DPoP")
    assert _with(ExpiredToken(), dpop).www_authenticate() == (
        'Bearer, DPoP error="invalid_token", '
        'error_description="The access token has expired", algs="ES256"'
    )
    assert _with(InsufficientScope(["a"]), dpop).www_authenticate() == (
        'Bearer, DPoP error="insufficient_scope", '
        'error_description="The access token lacks the required scope", scope="a", algs="ES256"'
    )


def test_dpop_errors_always_go_in_the_dpop_challenge() -> None:
    error = _with(InvalidDPoPProof("The DPoP proof is for another URL"), BOTH)
    assert error.www_authenticate() == (
        'Bearer, DPoP error="invalid_dpop_proof", '
        'error_description="The DPoP proof is for another URL", algs="ES256 PS256"'
    )
    assert error.headers() == {"WWW-Authenticate": error.www_authenticate()}


def test_dpop_only_challenge() -> None:
    only = Challenge(("DPoP",), ("ES256",), "Bearer")  # a Bearer request to a DPoP-only policy
    assert _with(InvalidTokenBinding(), only).www_authenticate(realm="r") == (
        'DPoP realm="r", error="invalid_token", '
        'error_description="The access token is not bound to what this request presents", '
        'algs="ES256"'
    )


def test_headers_only_for_client_errors() -> None:
    assert ValidationUnavailable().headers() == {}
    assert ConfigurationError().headers() == {}
    assert InvalidRequest().headers() == {"WWW-Authenticate": InvalidRequest().www_authenticate()}
