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
from .errors import (
    ConfigurationError,
    ExpiredToken,
    InactiveToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    MalformedToken,
    MissingToken,
    SecurityEventError,
    TokenGuardError,
    TokenNotYetValid,
    UnsupportedToken,
    UntrustedIssuer,
    ValidationUnavailable,
)
from .guard import TokenGuard
from .models import TokenInfo

__all__ = [
    "BearerToken",
    "ClientSecretBasic",
    "ClientSecretPost",
    "ConfigurationError",
    "ExpiredToken",
    "GuardConfig",
    "InactiveToken",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
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
    "ValidationUnavailable",
    "__version__",
    "bearer_token",
    "detect",
    "load_config",
]
