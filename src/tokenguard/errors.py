"""The tokenguard error hierarchy and RFC 6750 ``WWW-Authenticate`` header building.

Every failure tokenguard reports is a :class:`TokenGuardError`. Each class carries the
HTTP status a resource server should answer with and the RFC 6750 ``error`` code. The
``description`` is a fixed, human-readable sentence chosen by tokenguard: it never
contains the token, a secret, key material or a value taken from the token.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigurationError",
    "ExpiredToken",
    "InactiveToken",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
    "MalformedToken",
    "MissingToken",
    "SecurityEventError",
    "TokenGuardError",
    "TokenNotYetValid",
    "UnsupportedToken",
    "UntrustedIssuer",
    "ValidationUnavailable",
]

# RFC 6750 §3: error_description must stay within these characters.
_ALLOWED_DESCRIPTION = frozenset(
    chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F))
)
# The error codes defined for the Bearer scheme (RFC 6750 §3.1).
_BEARER_ERRORS = frozenset({"invalid_request", "invalid_token", "insufficient_scope"})


def _safe(text: str) -> str:
    return "".join(ch if ch in _ALLOWED_DESCRIPTION else " " for ch in text)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TokenGuardError(Exception):
    """Root of every error tokenguard raises.

    Attributes:
        status_code: the HTTP status a resource server should answer with.
        error: the OAuth error code (RFC 6750 §3.1 for the 4xx classes).
        description: a safe, fixed sentence; never contains token or secret material.
    """

    status_code: int = 500
    error: str | None = "server_error"
    default_description: str = "The access token could not be validated"

    def __init__(self, description: str | None = None) -> None:
        self.description = _safe(description or self.default_description)
        super().__init__(self.description)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    def www_authenticate(self, realm: str | None = None) -> str:
        """Build the RFC 6750 §3 ``WWW-Authenticate`` header value for this error."""
        params: list[tuple[str, str]] = []
        if realm is not None:
            params.append(("realm", _safe(realm)))
        if self.error in _BEARER_ERRORS:
            params.append(("error", self.error))
            params.append(("error_description", self.description))
        params.extend(self._extra_challenge_params())
        if not params:
            return "Bearer"
        return "Bearer " + ", ".join(f"{name}={_quote(value)}" for name, value in params)

    def _extra_challenge_params(self) -> list[tuple[str, str]]:
        return []


class InvalidRequest(TokenGuardError):
    """The request is malformed (e.g. a broken ``Authorization`` header): 400."""

    status_code = 400
    error = "invalid_request"
    default_description = "The request is malformed"


class MissingToken(TokenGuardError):
    """The request carries no access token at all (RFC 6750 §3.1: no error code)."""

    status_code = 401
    error = None
    default_description = "An access token is required"


class InvalidToken(TokenGuardError):
    """The access token is expired, revoked, malformed or invalid for another reason: 401."""

    status_code = 401
    error = "invalid_token"
    default_description = "The access token is invalid"


class MalformedToken(InvalidToken):
    """The token cannot be parsed (bad encoding, bad JSON, wrong structure, too long)."""

    default_description = "The access token is malformed"


class UnsupportedToken(InvalidToken):
    """The token is well formed but of a kind this policy does not accept."""

    default_description = "This kind of access token is not accepted here"


class InvalidSignature(InvalidToken):
    """No trusted key verifies the token's signature with an allowed algorithm."""

    default_description = "The access token signature is invalid"


class ExpiredToken(InvalidToken):
    """The token's ``exp`` has passed (beyond the policy leeway)."""

    default_description = "The access token has expired"


class TokenNotYetValid(InvalidToken):
    """The token's ``nbf`` or ``iat`` lies in the future (beyond the policy leeway)."""

    default_description = "The access token is not yet valid"


class InvalidAudience(InvalidToken):
    """The token is not intended for this resource server's audience."""

    default_description = "The access token is not intended for this audience"


class UntrustedIssuer(InvalidToken):
    """The token was not issued by an issuer this policy trusts."""

    default_description = "The access token issuer is not trusted"


class InvalidClaims(InvalidToken):
    """A required claim is missing or a claim has the wrong type or value."""

    default_description = "The access token claims are invalid"


class InactiveToken(InvalidToken):
    """The authorization server reports the token as not active (revoked, expired, unknown)."""

    default_description = "The access token is not active"


class InsufficientScope(TokenGuardError):
    """The token is valid but lacks scopes the request needs: 403."""

    status_code = 403
    error = "insufficient_scope"
    default_description = "The access token lacks the required scope"

    def __init__(self, scopes: Iterable[str], description: str | None = None) -> None:
        self.scopes: tuple[str, ...] = tuple(sorted(set(scopes)))
        super().__init__(description)

    def __repr__(self) -> str:
        return f"InsufficientScope(scopes={self.scopes!r})"

    def _extra_challenge_params(self) -> list[tuple[str, str]]:
        return [("scope", _safe(" ".join(self.scopes)))] if self.scopes else []


class ValidationUnavailable(TokenGuardError):
    """The token could not be checked: the authorization server or its JWKS is unreachable
    or answered nonsense, and nothing usable is cached. Never a pass: 503. When tokenguard
    knows when to try again, ``retry_after`` holds the seconds (an HTTP ``Retry-After``)."""

    status_code = 503
    error = "temporarily_unavailable"
    default_description = "Token validation is temporarily unavailable"

    def __init__(self, description: str | None = None, *, retry_after: int | None = None) -> None:
        #: Seconds after which asking again may succeed: send it as ``Retry-After``.
        self.retry_after = retry_after
        super().__init__(description)


class ConfigurationError(TokenGuardError):
    """The guard, an issuer or a policy is misconfigured: 500."""

    status_code = 500
    error = "server_error"
    default_description = "tokenguard is misconfigured"


class SecurityEventError(TokenGuardError):
    """A Security Event Token (RFC 8417) delivered by push (RFC 8935) was refused.

    ``err`` is the RFC 8935 §2.3 error code (``invalid_request``, ``invalid_key``,
    ``invalid_issuer``, ``invalid_audience``, ``authentication_failed``,
    ``access_denied``); the receiver answers it as ``{"err": ..., "description": ...}``
    with status 400 (401 for ``authentication_failed``).
    """

    status_code = 400
    error = "invalid_request"
    default_description = "The security event was refused"

    def __init__(self, err: str, description: str | None = None) -> None:
        self.err = err
        if err == "authentication_failed":
            self.status_code = 401
        super().__init__(description)

    def __repr__(self) -> str:
        return f"SecurityEventError({self.err!r}, {self.description!r})"
