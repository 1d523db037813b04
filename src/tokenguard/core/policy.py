"""Policies and issuers compiled for the hot path, and the routing decision. No I/O."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import GuardConfig, Issuer, Policy
from ..errors import ConfigurationError, MalformedToken, UnsupportedToken
from .binding import BindingRules, binding_rules
from .claims import REGISTERED_CLAIMS
from .detect import TokenFormat
from .discovery import MetadataState
from .jwks import JwksState, KeySet, static_keyset
from .observe import Tally
from .requirements import StepUp

__all__ = [
    "IssuerRuntime",
    "PolicyRuntime",
    "Route",
    "compile_config",
    "introspection_keep",
    "issuer_runtime",
    "route",
]

log = logging.getLogger("tokenguard")


class Route(enum.Enum):
    """How a token is validated."""

    LOCAL = "local"  # verify the JWT against the issuer's keys
    INTROSPECT = "introspect"  # ask the authorization server
    BOTH = "both"  # verify locally, then confirm live with the authorization server


@dataclass(frozen=True, slots=True)
class IssuerRuntime:
    """One configured issuer with its key and metadata state."""

    config: Issuer
    jwks: JwksState | None  # None: keys are only the static ones
    static: KeySet | None
    metadata: MetadataState

    @property
    def issuer(self) -> str:
        return self.config.issuer

    @property
    def can_introspect(self) -> bool:
        return self.config.client_auth is not None


@dataclass(frozen=True, slots=True)
class PolicyRuntime:
    """A policy with everything the validation flow needs precomputed."""

    config: Policy
    name: str
    audience: str
    mode: str
    leeway: float
    algorithms: frozenset[str]
    required_scopes: frozenset[str]
    issuers: dict[str, IssuerRuntime]
    introspector: IssuerRuntime | None
    active_cache_age: float  # how old a cached "active" introspection answer may be
    inactive_cache_age: float
    verified_cache_ttl: float  # 0: never use the verified-token cache
    binding: BindingRules  # DPoP / mTLS (core/binding.py)
    step_up: StepUp | None = None  # RFC 9470 acr_values / max_age
    keep: frozenset[str] | None = None  # the claims kept of a validated token (None: all)
    # Verified-token cache hits (core/observe.py): the one counter of the hot path.
    hits: Tally = field(default_factory=Tally, compare=False, repr=False)


def route(fmt: TokenFormat, policy: PolicyRuntime) -> Route:
    """Decide the validation path for a token of format ``fmt`` under ``policy``.

    An encrypted JWT cannot be verified here, so like an opaque token it can only be
    introspected; under ``jwt`` mode (or without any issuer to introspect with) both
    are refused.
    """
    if fmt is TokenFormat.MALFORMED:
        raise MalformedToken()
    mode = policy.mode
    if fmt is TokenFormat.JWS:
        if mode == "introspect":
            return Route.INTROSPECT
        return Route.BOTH if mode == "high_assurance" else Route.LOCAL
    if mode == "jwt" or policy.introspector is None:
        if fmt is TokenFormat.JWE:
            raise UnsupportedToken("Encrypted tokens are not accepted here")
        raise UnsupportedToken("Opaque tokens are not accepted here")
    return Route.INTROSPECT


def issuer_runtime(issuer: Issuer, config: GuardConfig) -> IssuerRuntime:
    settings = config.settings
    try:
        static = static_keyset(issuer.static_jwks, max_keys=settings.max_jwks_keys)
    except ValueError:
        raise ConfigurationError(f"static_jwks of {issuer.issuer} is not a JWK Set") from None
    remote = issuer.jwks_uri is not None or static is None
    return IssuerRuntime(
        config=issuer,
        jwks=JwksState(issuer.issuer, settings) if remote else None,
        static=static,
        metadata=MetadataState(
            issuer, ttl=settings.metadata_ttl, retry_after=settings.jwks_refresh_cooldown
        ),
    )


def _introspector(policy: Policy, trusted: dict[str, IssuerRuntime]) -> IssuerRuntime | None:
    if policy.introspection_issuer is not None:
        chosen = trusted[policy.introspection_issuer]
        if not chosen.can_introspect:
            raise ConfigurationError(
                f"policy {policy.name!r}: introspection_issuer has no client_auth"
            )
        return chosen
    able = [i for i in trusted.values() if i.can_introspect]
    if len(able) > 1:
        raise ConfigurationError(
            f"policy {policy.name!r} trusts several issuers that can introspect; "
            "set introspection_issuer"
        )
    return able[0] if able else None


def _policy_runtime(policy: Policy, issuers: dict[str, IssuerRuntime]) -> PolicyRuntime:
    trusted = {name: issuers[name] for name in (policy.issuers or issuers)}
    introspector = _introspector(policy, trusted)
    if policy.mode in ("introspect", "high_assurance") and introspector is None:
        raise ConfigurationError(
            f"policy {policy.name!r} in {policy.mode} mode needs an issuer with client_auth"
        )
    if policy.mode == "high_assurance":
        lacking = [i.issuer for i in trusted.values() if not i.can_introspect]
        if lacking:
            raise ConfigurationError(
                f"policy {policy.name!r}: every issuer of a high_assurance policy needs client_auth"
            )
    if policy.mode == "hybrid" and introspector is None:
        log.info(
            "policy %r has no issuer to introspect with: opaque tokens are refused", policy.name
        )
    high = policy.mode == "high_assurance"
    return PolicyRuntime(
        config=policy,
        name=policy.name,
        audience=policy.audience,
        mode=policy.mode,
        leeway=policy.leeway,
        algorithms=frozenset(policy.algorithms),
        required_scopes=frozenset(policy.required_scopes),
        issuers=trusted,
        introspector=introspector,
        active_cache_age=policy.high_assurance_cache_ttl
        if high
        else policy.introspection_cache_ttl,
        inactive_cache_age=0.0 if high else policy.inactive_cache_ttl,
        verified_cache_ttl=0.0 if high else policy.verified_cache_ttl,
        binding=binding_rules(policy),
        step_up=StepUp.of(policy.acr_values, policy.max_age),
        keep=None if policy.claims is None else REGISTERED_CLAIMS | frozenset(policy.claims),
    )


def introspection_keep(policies: Iterable[PolicyRuntime]) -> dict[str, frozenset[str] | None]:
    """Per issuer, the claims its introspection answers are trimmed to before they are
    cached: what any policy that introspects with it keeps (one cache serves them all)."""
    keep: dict[str, frozenset[str] | None] = {}
    for policy in policies:
        for name in policy.issuers:
            if name in keep and keep[name] is None:
                continue
            mine = policy.keep
            known = keep.get(name, frozenset())
            keep[name] = None if mine is None or known is None else known | mine
    return keep


def compile_config(
    config: GuardConfig,
) -> tuple[dict[str, IssuerRuntime], dict[str, PolicyRuntime]]:
    """Build the runtime view of a validated configuration."""
    issuers = {i.issuer: issuer_runtime(i, config) for i in config.issuers}
    policies = {p.name: _policy_runtime(p, issuers) for p in config.policies}
    return issuers, policies
