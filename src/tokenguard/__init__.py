"""tokenguard: validate OAuth 2.0 access tokens in resource servers.

JWT access tokens (RFC 9068) are verified locally against the issuer's JWKS; opaque
tokens are introspected (RFC 7662); both give one immutable :class:`TokenInfo` or a
:class:`TokenGuardError` that maps onto an RFC 6750 response.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from .bearer import bearer_token
from .client_auth import (
    BearerToken,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJWT,
    SelfSignedTlsClientAuth,
    TlsClientAuth,
)
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

# Cold start (issue 10 §4): `import tokenguard` loads only what the first validation needs.
# A public name whose module is heavy or needs an optional extra (a fleet backend, a
# framework helper) is listed in _LAZY and imported under TYPE_CHECKING, so type
# checkers and IDEs see it while the import happens on first attribute access; add it to
# __all__ too. Adapters are not re-exported here at all: `tokenguard.fastapi`, ...
if TYPE_CHECKING:
    from .stats import (
        CachesStats,
        CacheStats,
        FleetStats,
        GuardStats,
        IssuerStats,
        ValidationStats,
    )

_LAZY: dict[str, str] = {  # public name -> module (relative to this package)
    # guard.stats(): pydantic models built on first use (tokenguard.stats)
    "CacheStats": ".stats",
    "CachesStats": ".stats",
    "FleetStats": ".stats",
    "GuardStats": ".stats",
    "IssuerStats": ".stats",
    "ValidationStats": ".stats",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups do not come here again
    return value


__all__ = [
    "BearerToken",
    "CacheStats",
    "CachesStats",
    "Challenge",
    "ClientSecretBasic",
    "ClientSecretPost",
    "ConfigurationError",
    "DPoPProof",
    "ExpiredToken",
    "FleetStats",
    "GuardConfig",
    "GuardStats",
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
    "IssuerStats",
    "MalformedToken",
    "MissingToken",
    "Mode",
    "Policy",
    "PrivateKeyJWT",
    "SecurityEventError",
    "SelfSignedTlsClientAuth",
    "Settings",
    "TlsClientAuth",
    "TokenFormat",
    "TokenGuard",
    "TokenGuardError",
    "TokenInfo",
    "TokenNotYetValid",
    "UnsupportedToken",
    "UntrustedIssuer",
    "UseDPoPNonce",
    "ValidationStats",
    "ValidationUnavailable",
    "__version__",
    "bearer_token",
    "detect",
    "load_config",
]
