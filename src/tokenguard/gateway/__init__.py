"""tokenguard as the forward-auth service of nginx, Traefik and Envoy.

``create_app(config)`` builds the ASGI application; ``tokenguard gateway --config
gateway.toml`` serves it with worker processes. See ``docs/gateway.md``.
"""

from .app import GatewayApp, create_app
from .config import (
    GatewayConfig,
    GatewaySettings,
    IdentityHeaders,
    RouteConfig,
    load_gateway_config,
)

__all__ = [
    "GatewayApp",
    "GatewayConfig",
    "GatewaySettings",
    "IdentityHeaders",
    "RouteConfig",
    "create_app",
    "load_gateway_config",
]
