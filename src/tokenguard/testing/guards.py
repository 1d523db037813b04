"""Building a :class:`~tokenguard.TokenGuard` that trusts an :class:`AuthServer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tokenguard.testing.clients import DEFAULT_AUDIENCE

if TYPE_CHECKING:
    from tokenguard import Policy, TokenGuard
    from tokenguard.testing.server import AuthServer

__all__ = ["guard_for"]


def guard_for(
    server: AuthServer,
    *policies: Policy,
    settings: Mapping[str, Any] | None = None,
    issuer: Mapping[str, Any] | None = None,
    **policy: Any,
) -> TokenGuard:
    """A guard trusting ``server`` (plain HTTP allowed: it is on loopback).

    Without ``policies``, one policy named ``"default"`` is built from ``policy``
    keyword arguments (``audience`` defaults to :data:`DEFAULT_AUDIENCE`). The issuer
    introspects with the server's pre-registered client (``client_secret_basic``);
    ``issuer`` overrides :class:`~tokenguard.Issuer` fields, ``settings`` are passed on.
    """
    from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard

    options: dict[str, Any] = {
        "client_auth": ClientSecretBasic(server.client_id, server.client_secret),
        "allow_insecure_http": True,
        **(issuer or {}),
    }
    if not policies:
        policy.setdefault("name", "default")
        policy.setdefault("audience", DEFAULT_AUDIENCE)
        policies = (Policy(**policy),)
    return TokenGuard(
        issuers=[Issuer(server.issuer, **options)], policies=policies, settings=settings
    )
