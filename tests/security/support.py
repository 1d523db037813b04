"""Assertions shared by the attack and fuzz modules."""

from __future__ import annotations

from typing import Any

import pytest

from tokenguard import (
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidSignature,
    InvalidTokenBinding,
    MalformedToken,
    MissingToken,
    TokenGuard,
    TokenGuardError,
    TokenInfo,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
    UseDPoPNonce,
    ValidationUnavailable,
)

#: The status each error class must carry: 401 for anything wrong with the token, 403
#: only for scope, 503 when the authorization server or its keys cannot answer.
STATUS: dict[type[TokenGuardError], int] = {
    MissingToken: 401,
    MalformedToken: 401,
    UnsupportedToken: 401,
    InvalidSignature: 401,
    ExpiredToken: 401,
    TokenNotYetValid: 401,
    InvalidAudience: 401,
    UntrustedIssuer: 401,
    InvalidClaims: 401,
    InactiveToken: 401,
    InvalidTokenBinding: 401,
    InvalidDPoPProof: 401,
    UseDPoPNonce: 401,
    InvalidRequest: 400,
    InsufficientScope: 403,
    ValidationUnavailable: 503,
}

#: Tokens handed to the guard in the current test; the autouse log watch checks them.
SEEN: list[str] = []
_MIN_PIECE = 24  # shorter pieces (a header segment, "e30") may occur by coincidence


def _pieces(token: str) -> list[str]:
    pieces = [token] if len(token) >= 8 else []
    parts = token.split(".")
    if len(parts) > 1:
        pieces += [p for p in parts[1:] if len(p) >= _MIN_PIECE]
    return pieces


def leaks(text: str) -> list[str]:
    """Token material (whole token, payload, signature) of ``SEEN`` found in ``text``."""
    return [p for token in SEEN for p in _pieces(token) if p in text]


def assert_no_leak(token: str, error: BaseException) -> None:
    """The token appears in no part of the error a resource server might log or send."""
    shown = [str(error), repr(error), getattr(error, "description", "")]
    if isinstance(error, TokenGuardError):
        shown.append(error.www_authenticate(realm="api"))
    text = "\n".join(shown)
    for piece in _pieces(token):
        assert piece not in text, f"token material in {type(error).__name__}: {text!r}"


def outcome(
    check: Any, guard: TokenGuard, token: Any, policy: str | None = None, *, secret: bool = True
) -> Any:
    """The TokenInfo or the TokenGuardError of one validation; anything else propagates.

    With ``secret`` (the default) the token is treated as a credential: it must not appear
    in the error nor in any log line. Arbitrary fuzzed strings are not credentials (a
    fuzzer may well produce "invalid_token" or a URL path that legitimately appears in a
    message), so the string properties pass ``secret=False``."""
    secret = secret and isinstance(token, str)
    if secret:
        SEEN.append(token)
    try:
        return check(guard, token, policy)
    except TokenGuardError as caught:
        error = caught
    assert type(error) in STATUS, f"unexpected error class {type(error).__name__}"
    assert error.status_code == STATUS[type(error)], (type(error), error.status_code)
    if secret:
        assert_no_leak(token, error)
    return error


def rejected(
    check: Any,
    guard: TokenGuard,
    token: Any,
    expected: type[TokenGuardError],
    policy: str | None = None,
) -> TokenGuardError:
    """Validate ``token`` and assert it is refused with exactly ``expected`` and its status."""
    result = outcome(check, guard, token, policy)
    if isinstance(result, TokenInfo):
        pytest.fail(f"ACCEPTED, expected {expected.__name__}: {result!r}")
    assert type(result) is expected, (
        f"{type(result).__name__}({result.description!r}) instead of {expected.__name__}"
    )
    assert result.status_code == STATUS[expected]
    return result


def is_refusal(result: TokenGuardError) -> bool:
    """A forged or broken token's refusal: 401, or 503 with ``Retry-After`` for a token
    naming a kid the issuer's keys do not have while no key refresh is allowed yet (the
    unannounced-rotation rule, docs/fleet.md): it may be signed with a key published
    since, so it is not knowable now. Never a pass."""
    if result.status_code == 401:
        return True
    return isinstance(result, ValidationUnavailable) and result.retry_after is not None


def rejected_unknown_key(check: Any, guard: TokenGuard, token: Any) -> TokenGuardError:
    """A token whose key the guard does not have: InvalidSignature (401), or the 503 of
    :func:`is_refusal` while no refresh is allowed."""
    result = outcome(check, guard, token, None)
    if isinstance(result, TokenInfo):
        pytest.fail(f"ACCEPTED, expected a refusal: {result!r}")
    assert isinstance(result, InvalidSignature | ValidationUnavailable), repr(result)
    assert is_refusal(result), repr(result)
    return result


def accepted(check: Any, guard: TokenGuard, token: str, policy: str | None = None) -> TokenInfo:
    """Validate ``token`` and assert it passes (controls: the attack's baseline is valid)."""
    result = outcome(check, guard, token, policy)
    assert isinstance(result, TokenInfo), f"control token refused: {result!r}"
    return result
