"""A real OAuth 2.0 authorization server, in-process, for testing resource servers.

:class:`AuthServer` listens on an ephemeral loopback port and serves discovery metadata,
a JWKS, a client-credentials token endpoint, RFC 7662 introspection and RFC 7009
revocation. Tests can also mint tokens directly, rotate keys, take the server down and
inject slow or broken answers. :func:`guard_for` builds a :class:`~tokenguard.TokenGuard`
that trusts a server. With pytest, the ``auth_server``, ``issue_token`` and
``token_guard`` fixtures come from :mod:`tokenguard.testing.pytest_plugin`.
"""

from tokenguard.testing.clients import DEFAULT_AUDIENCE, Client, TokenFormat
from tokenguard.testing.dpop import DPoPKey
from tokenguard.testing.endpoints import ENDPOINTS
from tokenguard.testing.guards import guard_for
from tokenguard.testing.keys import SUPPORTED_ALGORITHMS
from tokenguard.testing.server import DEFAULT_CLIENT_ID, DEFAULT_SIGNING_ALGORITHMS, AuthServer
from tokenguard.testing.transport import MAX_BODY_SIZE

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SIGNING_ALGORITHMS",
    "ENDPOINTS",
    "MAX_BODY_SIZE",
    "SUPPORTED_ALGORITHMS",
    "AuthServer",
    "Client",
    "DPoPKey",
    "TokenFormat",
    "guard_for",
]
