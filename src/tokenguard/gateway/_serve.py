"""The app factory worker processes import (the configuration path is in the environment)."""

from __future__ import annotations

import os

from .app import GatewayApp, create_app

#: Set by ``tokenguard gateway`` before the workers start.
CONFIG_ENV = "TOKENGUARD_GATEWAY_CONFIG"


def app() -> GatewayApp:
    """Build the app from the file named in ``TOKENGUARD_GATEWAY_CONFIG``."""
    return create_app(os.environ[CONFIG_ENV])
