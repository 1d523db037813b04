"""The tokenguard error hierarchy and ``WWW-Authenticate`` header building.

Every failure tokenguard reports is a :class:`TokenGuardError`. Each class carries the
HTTP status a resource server should answer with and the OAuth ``error`` code (RFC 6750,
RFC 9449 for DPoP). The ``description`` is a fixed, human-readable sentence chosen by
tokenguard: it never contains the token, a secret, key material or a value taken from
the token. Challenges use the ``Bearer`` scheme (RFC 6750 §3) and, when the policy
accepts DPoP, the ``DPoP`` scheme with its ``algs`` (RFC 9449 §7.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Challenge",
    "ConfigurationError",
    "ExpiredToken",
    "InactiveToken",
    "InsufficientScope",
    "InsufficientUserAuthentication",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
    "InvalidTokenBinding",
    "MalformedToken",
    "MissingToken",
    "SecurityEventError",
    "TokenGuardError",
    "TokenNotYetValid",
    "UnsupportedToken",
    "UntrustedIssuer",
    "UseDPoPNonce",
    "ValidationUnavailable",
]

# RFC 6750 §3: error_description must stay within these characters.
_ALLOWED_DESCRIPTION = frozenset(
    chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F))
)
# The error codes defined for the Bearer scheme (RFC 6750 §3.1, RFC 9470 §3), and the
# ones the DPoP scheme adds (RFC 9449 §7.1, §8).
_BEARER_ERRORS = frozenset(
    {"invalid_request", "invalid_token", "insufficient_scope", "insufficient_user_authentication"}
)
_DPOP_ONLY_ERRORS = frozenset({"invalid_dpop_proof", "use_dpop_nonce"})
_DPOP_ERRORS = _BEARER_ERRORS | _DPOP_ONLY_ERRORS


def _safe(text: str) -> str:
    return "".join(ch if ch in _ALLOWED_DESCRIPTION else " " for ch in text)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Challenge:
    """Which authentication schemes a response challenges with (RFC 9110 §11.6.1).

    ``schemes`` in order (``"Bearer"``, ``"DPoP"``); ``algs`` the DPoP proof algorithms
    accepted (RFC 9449 §7.1); ``scheme`` the one the request used, which carries the
    error parameters. The guard sets it on every error it raises, from the policy.
    """

    schemes: tuple[str, ...] = ("Bearer",)
    algs: tuple[str, ...] = ()
    scheme: str = "Bearer"


_BEARER_ONLY = Challenge()


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

    #: The schemes to challenge with; the guard sets it from the policy (Bearer only
    #: when unset).
    challenge: Challenge | None = None

    def __init__(self, description: str | None = None) -> None:
        self.description = _safe(description or self.default_description)
        super().__init__(self.description)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    def www_authenticate(
        self, realm: str | None = None, *, resource_metadata: str | None = None
    ) -> str:
        """Build the ``WWW-Authenticate`` header value for this error: an RFC 6750 §3
        ``Bearer`` challenge and/or an RFC 9449 §7.1 ``DPoP`` challenge (with ``algs``),
        as the policy says; the error parameters go in the scheme the request used.

        ``resource_metadata`` is the URL of the resource's RFC 9728 metadata document
        (RFC 9728 §5.1), so a client can find which authorization servers to ask.
        """
        challenge = self.challenge or _BEARER_ONLY
        schemes, carrier = challenge.schemes, challenge.scheme
        if self.error in _DPOP_ONLY_ERRORS:
            carrier = "DPoP"  # only the DPoP scheme defines these codes
            if carrier not in schemes:
                schemes = (*schemes, carrier)
        elif carrier not in schemes:
            carrier = schemes[0]
        parts = []
        for scheme in schemes:
            params: list[tuple[str, str]] = []
            if realm is not None:
                params.append(("realm", _safe(realm)))
            known = _DPOP_ERRORS if scheme == "DPoP" else _BEARER_ERRORS
            if scheme == carrier and self.error in known:
                params.append(("error", self.error))
                params.append(("error_description", self.description))
                params.extend(self._extra_challenge_params())
            if scheme == "DPoP" and challenge.algs:
                params.append(("algs", " ".join(challenge.algs)))
            if resource_metadata is not None:
                params.append(("resource_metadata", _safe(resource_metadata)))
            rendered = ", ".join(f"{name}={_quote(value)}" for name, value in params)
            parts.append(f"{scheme} {rendered}" if rendered else scheme)
        return ", ".join(parts)

    def headers(self, realm: str | None = None) -> dict[str, str]:
        """The response headers for this error: ``WWW-Authenticate`` for a 400, 401 or
        403 (RFC 6750 §3), and ``DPoP-Nonce`` when a nonce is demanded (RFC 9449 §9)."""
        if self.status_code in (400, 401, 403):
            return {"WWW-Authenticate": self.www_authenticate(realm)}
        return {}

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


class InvalidTokenBinding(InvalidToken):
    """The token is sender-constrained (``cnf``: DPoP RFC 9449, mTLS RFC 8705) and the
    request does not prove possession: a DPoP-bound token sent with the ``Bearer``
    scheme, a certificate-bound token without the client certificate it is bound to, an
    unbound token sent with the ``DPoP`` scheme, or a bearer token where the policy
    demands DPoP."""

    default_description = "The access token is not bound to what this request presents"


class InvalidDPoPProof(InvalidToken):
    """The DPoP proof (RFC 9449 §4.3) is missing, malformed, or fails one of its checks:
    401 ``invalid_dpop_proof``."""

    error = "invalid_dpop_proof"
    default_description = "The DPoP proof is invalid"


class UseDPoPNonce(InvalidToken):
    """The policy demands a server-provided nonce in DPoP proofs and the proof has none,
    or a stale one (RFC 9449 §9): 401 ``use_dpop_nonce`` with a fresh ``DPoP-Nonce``."""

    error = "use_dpop_nonce"
    default_description = "A DPoP proof with the nonce provided by this server is required"

    def __init__(self, nonce: str, description: str | None = None) -> None:
        self.nonce = nonce
        super().__init__(description)

    def __repr__(self) -> str:
        return f"UseDPoPNonce({self.description!r})"

    def headers(self, realm: str | None = None) -> dict[str, str]:
        return {**super().headers(realm), "DPoP-Nonce": self.nonce}


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


class InsufficientUserAuthentication(TokenGuardError):
    """The token is valid but the user's authentication behind it is not strong or recent
    enough (RFC 9470 step-up): 401 ``insufficient_user_authentication``.

    The challenge carries the ``acr_values`` and ``max_age`` the resource needs, so the
    client can ask the authorization server for a token from a fresh, stronger login.
    """

    status_code = 401
    error = "insufficient_user_authentication"
    default_description = "A stronger or more recent user authentication is required"

    def __init__(
        self,
        acr_values: Iterable[str] | None = (),
        max_age: int | None = None,
        description: str | None = None,
    ) -> None:
        self.acr_values: tuple[str, ...] = tuple(acr_values or ())
        self.max_age = max_age
        super().__init__(description)

    def __repr__(self) -> str:
        return (
            f"InsufficientUserAuthentication(acr_values={self.acr_values!r}, "
            f"max_age={self.max_age!r})"
        )

    def _extra_challenge_params(self) -> list[tuple[str, str]]:
        params = []
        if self.acr_values:
            params.append(("acr_values", _safe(" ".join(self.acr_values))))
        if self.max_age is not None:
            params.append(("max_age", str(self.max_age)))
        return params


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

    def headers(self, realm: str | None = None) -> dict[str, str]:
        """``Retry-After`` when tokenguard knows when asking again may succeed."""
        headers = super().headers(realm)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


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
