"""tokenguard: validate OAuth 2.0 access tokens in resource servers.

JWT access tokens (RFC 9068) are verified locally against the issuer's JWKS; opaque
tokens are introspected (RFC 7662); both give one immutable :class:`TokenInfo` or a
:class:`TokenGuardError` that maps onto an RFC 6750 response.
"""

__version__ = "0.1.0"

from .bearer import bearer_token
from .client_auth import BearerToken, ClientSecretBasic, ClientSecretPost, PrivateKeyJWT
from .config import GuardConfig, Issuer, Mode, Policy, Settings, load_config
from .core.detect import TokenFormat, detect
from .core.dpop import DPoPProof
from .errors import (
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
from .guard import TokenGuard
from .models import TokenInfo

__all__ = [
    "BearerToken",
    "Challenge",
    "ClientSecretBasic",
    "ClientSecretPost",
    "ConfigurationError",
    "DPoPProof",
    "ExpiredToken",
    "GuardConfig",
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
    "Issuer",
    "MalformedToken",
    "MissingToken",
    "Mode",
    "Policy",
    "PrivateKeyJWT",
    "SecurityEventError",
    "Settings",
    "TokenFormat",
    "TokenGuard",
    "TokenGuardError",
    "TokenInfo",
    "TokenNotYetValid",
    "UnsupportedToken",
    "UntrustedIssuer",
    "UseDPoPNonce",
    "ValidationUnavailable",
    "__version__",
    "bearer_token",
    "detect",
    "load_config",
]
