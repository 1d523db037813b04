"""Configuration: issuers, per-audience policies and guard-wide settings.

All are frozen pydantic models, so a configuration is checked once, up front, with
errors that name the field; they can be built in code or loaded from a TOML file or a
mapping (:func:`load_config`). Secrets may be given as ``<name>_env`` in a file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .client_auth import ClientAuth, positional, secret_from_env
from .core.algorithms import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    DEFAULT_DPOP_ALGORITHMS,
    REGISTRY,
)
from .core.urls import endpoint_problem
from .errors import ConfigurationError
from .fleet.config import FleetSettings

__all__ = ["GuardConfig", "Issuer", "Mode", "Policy", "Settings", "load_config"]

Mode = Literal["jwt", "introspect", "hybrid", "high_assurance"]
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 NQCHAR
DPoPMode = Literal["disabled", "allowed", "required"]


class Issuer(BaseModel):
    """An authorization server whose tokens may be trusted, and how to reach it.

    ``issuer`` is the exact ``iss`` value. ``jwks_uri`` and ``introspection_endpoint``
    default to what RFC 8414 / OpenID Connect discovery publishes for it (fetched only
    when needed). ``client_auth`` is required to introspect. ``static_jwks`` adds keys
    configured locally (the only place an HMAC ``oct`` key may come from).
    ``allow_insecure_http`` permits ``http://`` URLs, and only on a loopback host.
    ``signed_introspection`` asks for and requires signed introspection answers (RFC 9701:
    ``application/token-introspection+jwt``, verified against the issuer's keys; a plain
    JSON answer is then refused with 503).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    issuer: str
    jwks_uri: str | None = None
    introspection_endpoint: str | None = None
    client_auth: ClientAuth | None = None
    metadata_url: str | None = None
    static_jwks: Mapping[str, Any] | None = Field(default=None, repr=False)
    allow_insecure_http: bool = False
    signed_introspection: bool = False

    def __init__(self, issuer: str | None = None, /, **data: Any) -> None:
        super().__init__(**positional(data, issuer=issuer))

    @model_validator(mode="after")
    def _signed_needs_client_id(self) -> Issuer:
        # RFC 9701 §5: the signed answer's aud is the client id of the resource server.
        if self.signed_introspection and not getattr(self.client_auth, "client_id", None):
            raise ValueError("signed_introspection needs a client_auth with a client_id")
        return self

    @model_validator(mode="after")
    def _check_urls(self) -> Issuer:
        problem = endpoint_problem(
            self.issuer, allow_insecure_http=self.allow_insecure_http, is_issuer=True
        )
        if problem:
            raise ValueError(f"issuer {problem}")
        for name in ("jwks_uri", "introspection_endpoint", "metadata_url"):
            url = getattr(self, name)
            if url is not None and (
                problem := endpoint_problem(url, allow_insecure_http=self.allow_insecure_http)
            ):
                raise ValueError(f"{name} {problem}")
        return self

    @field_serializer("static_jwks")
    def _mask_key_material(self, value: Mapping[str, Any] | None) -> Any:
        # A static key set may hold an HMAC secret (`k`): dumps mask it as they mask
        # client secrets, so a logged or printed configuration never shows it.
        return None if value is None else _masked(value)

    def __repr__(self) -> str:
        return f"Issuer({self.issuer!r})"

    __str__ = __repr__


#: JWK members that hold secret key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
_SECRET_JWK_MEMBERS = frozenset({"k", "d", "p", "q", "dp", "dq", "qi", "oth"})
_MASK = "**********"  # what pydantic shows for a SecretStr


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            name: _MASK if name in _SECRET_JWK_MEMBERS else _masked(member)
            for name, member in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


class Policy(BaseModel):
    """What one protected audience accepts.

    Attributes:
        name: how ``validate(token, policy=name)`` refers to it.
        audience: the ``aud`` value a token must carry for this resource server.
        issuers: the trusted issuers (default: every configured issuer).
        algorithms: the JWS algorithms accepted (bound to key types; never ``none``).
        required_scopes: scopes every token must carry (else 403 insufficient_scope).
        mode: ``jwt`` (local only, opaque refused), ``introspect`` (always ask the AS),
            ``hybrid`` (JWT locally, opaque by introspection) or ``high_assurance``
            (JWT verified locally *and* introspected live; AS down means 503).
        leeway: clock-skew allowance in seconds for ``exp``/``nbf``/``iat`` (at most 300).
        accept_plain_jwt: also accept ``typ`` ``JWT`` or no ``typ`` (servers that do not
            type their RFC 9068 tokens); ``at+jwt`` is always accepted.
        introspection_issuer: which issuer opaque tokens are sent to, when the policy
            trusts more than one that can introspect.
        introspection_cache_ttl: how long an "active" introspection answer may be reused.
        inactive_cache_ttl: how long an "inactive" answer may be reused.
        high_assurance_cache_ttl: reuse of introspection answers under ``high_assurance``
            (default 0: every call asks the AS).
        verified_cache_ttl: how long a fully validated token is recognised again by hash.
        require_introspection_audience: refuse introspection answers about an opaque
            token that carry no ``aud`` (default). Without it, a token the server issued
            for another resource server passes whenever the server omits ``aud``; turn it
            off only for servers that never return one (a present ``aud`` is always
            checked, and a JWT's ``aud`` always is required).
        dpop: ``allowed`` (default: DPoP-bound tokens pass with a valid proof, bearer
            tokens as bearer tokens; challenges offer ``Bearer`` and ``DPoP``),
            ``required`` (every token must be DPoP-bound and proven; challenges offer
            ``DPoP`` only) or ``disabled`` (DPoP-bound tokens are refused).
        dpop_algorithms: the asymmetric algorithms a DPoP proof may use (RFC 9449 §4.3),
            in the order the ``algs`` challenge parameter lists them.
        dpop_max_age: how far a proof's ``iat`` may lie from now, in seconds; its
            ``jti`` is remembered for that window.
        dpop_nonce: demand a nonce this server issued in every proof (RFC 9449 §9).
        allow_sender_constrained: deprecated. Tokens bound by ``cnf`` (DPoP, mTLS) are
            now checked whenever ``validate`` gets the request's DPoP proof or client
            certificate; with this flag a bound token validated *without* either is
            accepted unchecked, as before (the caller checks ``TokenInfo.cnf``).
        acr_values: step-up (RFC 9470): the token's ``acr`` must be one of these, else
            401 ``insufficient_user_authentication`` naming them.
        max_age: step-up (RFC 9470): the user must have authenticated (``auth_time``) at
            most this many seconds ago; a token without ``auth_time`` fails.
        require_rfc9068_claims: a token typed ``at+jwt`` must carry ``sub``,
            ``client_id`` and ``jti`` (RFC 9068 §2.2); set False for servers that omit
            them. Untyped tokens (``accept_plain_jwt``) are not held to the profile.
        audience_claim: the claim that must name ``audience``: ``aud`` (the default;
            RFC 7519, RFC 9068) or ``client_id``, for servers whose access tokens carry
            no ``aud`` and are issued to one app client (Amazon Cognito): ``audience``
            is then the client id accepted. Use with ``required_claim_values``.
        required_claim_values: claims that must be present with exactly these string
            values, e.g. ``{"token_use": "access"}`` for Cognito, whose ID tokens are
            signed with the same keys and differ by that claim.
        claims: the claims this service reads. ``TokenInfo.claims`` and every cache
            keep only these and the registered ones tokenguard reads itself
            (``iss sub aud exp nbf iat jti client_id scope scp auth_time acr amr cnf
            active username token_type``); the rest of a token is dropped once it is
            validated, so a cached token costs less memory and leaks less. Unset (the
            default) keeps every claim.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    name: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    issuers: Sequence[str] | None = None
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    required_scopes: Sequence[str] = ()
    mode: Mode = "hybrid"
    leeway: float = Field(default=60.0, ge=0, le=300)
    accept_plain_jwt: bool = False
    introspection_issuer: str | None = None
    introspection_cache_ttl: float = Field(default=60.0, ge=0, le=3600)
    inactive_cache_ttl: float = Field(default=10.0, ge=0, le=300)
    high_assurance_cache_ttl: float = Field(default=0.0, ge=0, le=60)
    verified_cache_ttl: float = Field(default=300.0, ge=0, le=3600)
    require_introspection_audience: bool = True
    dpop: DPoPMode = "allowed"
    dpop_algorithms: Sequence[str] = DEFAULT_DPOP_ALGORITHMS
    dpop_max_age: float = Field(default=60.0, gt=0, le=600)
    dpop_nonce: bool = False
    allow_sender_constrained: bool = False
    acr_values: Sequence[str] | None = None
    max_age: int | None = Field(default=None, ge=0)
    require_rfc9068_claims: bool = True
    claims: Sequence[str] | None = None
    audience_claim: Literal["aud", "client_id"] = "aud"
    required_claim_values: Mapping[str, str] = Field(default_factory=dict)

    @field_validator(
        "issuers", "algorithms", "required_scopes", "dpop_algorithms", "acr_values", "claims"
    )
    @classmethod
    def _as_tuple(cls, value: Sequence[str] | None) -> tuple[str, ...] | None:
        # Accept any sequence (a list in code or TOML); keep an immutable tuple.
        return None if value is None else tuple(value)

    @field_validator("required_claim_values")
    @classmethod
    def _claim_values(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        if any(not name or not isinstance(v, str) for name, v in value.items()):
            raise ValueError("required_claim_values maps claim names to string values")
        return dict(value)

    @field_validator("issuers")
    @classmethod
    def _some_issuer(cls, value: Sequence[str] | None) -> Sequence[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list trusts nobody; leave it unset to trust every issuer")
        return value

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: Sequence[str]) -> Sequence[str]:
        if not value:
            raise ValueError("at least one algorithm is required")
        unknown = [a for a in value if a not in REGISTRY]
        if unknown:
            raise ValueError(f"unsupported algorithms {unknown} (never 'none')")
        return value

    @field_validator("claims")
    @classmethod
    def _claim_names(cls, value: Sequence[str] | None) -> Sequence[str] | None:
        if value is not None and not all(value):
            raise ValueError("claim names must be non-empty strings")
        return value

    @field_validator("dpop_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: Sequence[str]) -> Sequence[str]:
        # RFC 9449 §4.3: a proof's signature is verified with the public key it carries.
        wrong = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if not value or wrong:
            raise ValueError(f"DPoP proofs need asymmetric algorithms ({wrong or 'none given'})")
        return value

    @model_validator(mode="after")
    def _deprecations(self) -> Policy:
        if self.allow_sender_constrained:
            warnings.warn(
                "Policy(allow_sender_constrained=True) is deprecated: pass the request's "
                "DPoP proof (dpop=DPoPProof(...)) or client certificate to validate() and "
                "tokenguard checks the binding itself",
                DeprecationWarning,
                stacklevel=2,
            )
        return self

    @field_validator("required_scopes")
    @classmethod
    def _scope_tokens(cls, value: Sequence[str]) -> Sequence[str]:
        # RFC 6749 §3.3 scope-token, so a challenge's scope parameter carries it as is.
        if any(not SCOPE_TOKEN.fullmatch(s) for s in value):
            raise ValueError(
                "each required scope must be a non-empty string of visible ASCII without "
                "spaces, quotes or backslashes (RFC 6749 §3.3)"
            )
        return value

    @field_validator("acr_values")
    @classmethod
    def _acr_tokens(cls, value: Sequence[str] | None) -> Sequence[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty list accepts no acr; leave it unset to accept any")
        if any(not s or any(c.isspace() for c in s) for s in value):
            raise ValueError("each acr value must be a non-empty string without spaces")
        return value


_HOUR = 3600.0
_DAY = 24 * _HOUR


class Settings(BaseModel):
    """Guard-wide bounds: timeouts, sizes, cache sizes, JWKS refresh behaviour, and how
    many introspections may be in flight per issuer.

    ``http_timeout`` bounds each whole exchange with the authorization server
    (connection, request, interim answers, status line, headers and body), and every
    validation waiting for it. ``max_concurrent_introspections`` bounds the introspection
    requests in flight for one issuer; one more waits at most ``introspection_queue_wait``
    seconds (never past ``http_timeout``) for a free slot and is then refused with
    :class:`~tokenguard.ValidationUnavailable` (503, ``retry_after`` set), so a flood of
    random tokens cannot turn the service into a load generator against its
    authorization server.

    Every duration has an upper bound, so no setting can turn key rotation off: a key
    set is fresh for at most ``jwks_max_ttl`` (at most 7 days) and is trusted past that,
    while it cannot be refreshed, for at most ``jwks_stale_window`` (at most 1 day).

    ``error_descriptions`` chooses what a 401 tells the client: ``"detailed"`` (the
    default) names the failed check (expired, wrong audience, untrusted issuer...),
    ``"generic"`` says only that the token is invalid, so unsigned probes learn nothing
    about which issuer or audience is accepted. The error's class is the same either
    way, for the service's own logs and metrics.

    ``dpop_replay_cache_size`` bounds the DPoP ``jti`` replay cache (about 100 bytes an
    entry; size it above peak proofs/s times twice the largest ``dpop_max_age``: when it
    is full, proofs are refused with 503 rather than replays let through).
    ``dpop_nonce_secret`` keys the DPoP nonces this guard issues; give every process of a
    fleet the same one (default: random per guard).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    http_timeout: float = Field(default=5.0, gt=0, le=60)
    max_token_length: int = Field(default=16384, ge=256, le=1_048_576)
    max_jwks_bytes: int = Field(default=512 * 1024, ge=1024)
    max_metadata_bytes: int = Field(default=256 * 1024, ge=1024)
    max_introspection_bytes: int = Field(default=64 * 1024, ge=1024)
    max_jwks_keys: int = Field(default=100, ge=1, le=10_000)
    jwks_default_ttl: float = Field(default=_HOUR, gt=0, le=7 * _DAY)
    jwks_min_ttl: float = Field(default=60.0, ge=0, le=_HOUR)
    jwks_max_ttl: float = Field(default=_DAY, gt=0, le=7 * _DAY)
    jwks_refresh_cooldown: float = Field(default=15.0, ge=0, le=300)
    jwks_stale_window: float = Field(default=6 * _HOUR, ge=0, le=_DAY)
    metadata_ttl: float = Field(default=_DAY, gt=0, le=7 * _DAY)
    introspection_cache_size: int = Field(default=40_000, ge=0)
    verified_cache_size: int = Field(default=40_000, ge=0)
    #: Introspection requests in flight at once per issuer (sync and async together).
    max_concurrent_introspections: int = Field(default=64, ge=1, le=100_000)
    #: Seconds an introspection may wait for a free slot before it is refused with 503.
    introspection_queue_wait: float = Field(default=0.5, ge=0, le=60)
    #: The longest lifetime of an access token the issuers mint: revocations whose token
    #: expiry is unknown, and subject/client cut-offs, are kept this long.
    max_token_lifetime: float = Field(default=86400.0, gt=0, le=366 * 86400.0)
    error_descriptions: Literal["detailed", "generic"] = "detailed"
    max_dpop_proof_length: int = Field(default=8192, ge=1024, le=65_536)
    dpop_replay_cache_size: int = Field(default=1_000_000, ge=1000)
    dpop_nonce_secret: SecretStr | None = Field(default=None, min_length=16)

    @model_validator(mode="before")
    @classmethod
    def _env(cls, data: Any) -> Any:
        return secret_from_env(data, "dpop_nonce_secret")

    @model_validator(mode="after")
    def _ttl_bounds(self) -> Settings:
        if self.jwks_min_ttl > self.jwks_max_ttl:
            raise ValueError("jwks_min_ttl must not exceed jwks_max_ttl")
        return self


class GuardConfig(BaseModel):
    """A whole guard configuration, checked for consistency between its parts."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    issuers: tuple[Issuer, ...] = Field(min_length=1)
    policies: tuple[Policy, ...] = Field(min_length=1)
    # A factory: a default instance here would build Settings' schema at import.
    settings: Settings = Field(default_factory=Settings)
    fleet: FleetSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GuardConfig:
        known = [i.issuer for i in self.issuers]
        if len(set(known)) != len(known):
            raise ValueError("issuers must be unique")
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError("policy names must be unique")
        for policy in self.policies:
            for iss in policy.issuers or ():
                if iss not in known:
                    raise ValueError(f"policy {policy.name!r} trusts unknown issuer {iss!r}")
            if policy.introspection_issuer is not None and policy.introspection_issuer not in (
                policy.issuers or known
            ):
                raise ValueError(
                    f"policy {policy.name!r}: introspection_issuer is not one of its issuers"
                )
        return self


def _describe(error: ValidationError) -> str:
    # Never echo input values: they may be secrets.
    items = error.errors(include_input=False, include_url=False)
    parts = []
    for item in items:
        loc = item["loc"]
        # pydantic counts only the valid members of a list: one bad issuer also reports
        # "issuers: should have at least 1 item", which says nothing more. Say the cause.
        if item["type"] == "too_short" and any(
            other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in items
        ):
            continue
        where = ".".join(str(p) for p in loc) or "config"
        parts.append(f"{where}: {item['msg']}")
    return "invalid tokenguard configuration: " + "; ".join(parts)


def build_config(**data: Any) -> GuardConfig:
    """Validate configuration data, raising :class:`ConfigurationError` with every problem."""
    try:
        return GuardConfig.model_validate(data)
    except ValidationError as error:
        problem = _describe(error)
    # Raised outside the handler: the ValidationError, which holds the input values
    # (secrets among them), is not kept as the error's context.
    raise ConfigurationError(problem)


def read_toml(source: str | Path) -> tuple[dict[str, Any], str]:
    """The TOML document of a configuration file, and its text (to locate problems).

    Raises :class:`ConfigurationError` naming the file, and the line (and column) when
    there is one, for a file that cannot be read, is not UTF-8 or is not valid TOML. The
    messages never quote the file's content: it may hold secrets.
    """
    if not isinstance(source, str | Path):
        raise ConfigurationError("a configuration is a TOML file path or a mapping")
    name = str(source)
    problem = None
    try:
        raw = Path(source).read_bytes()
    except OSError as error:
        problem = f"cannot read configuration file {name!r}: {error.strerror or 'failed'}"
    except ValueError:  # a NUL in the path
        problem = "the configuration file path is not a valid path"
    if problem is not None:
        raise ConfigurationError(problem)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        problem = (
            f"configuration file {name!r} is not UTF-8 text "
            f"(line {line}, column {column}: a byte that is not UTF-8)"
        )
    if problem is not None:
        raise ConfigurationError(problem)
    import tomllib  # only for configuration files (not imported by ``import tokenguard``)

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # Its message names a line and column, never the document's content.
        problem = f"configuration file {name!r} is not valid TOML: {error}"
    if problem is not None:
        raise ConfigurationError(problem)
    return data, text


def load_config(source: str | Path | Mapping[str, Any]) -> GuardConfig:
    """Load a configuration from a TOML file path or a mapping.

    The TOML layout is ``[settings]``, ``[[issuers]]`` and ``[[policies]]`` tables with
    the fields of :class:`Settings`, :class:`Issuer` and :class:`Policy`; a client
    secret can be given as ``client_secret_env = "VARIABLE"``. Every problem raises
    :class:`ConfigurationError` (naming the file, and the line where it can), never the
    value of a secret.
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data, _ = read_toml(source)
    if any(not isinstance(key, str) for key in data):
        raise ConfigurationError("invalid tokenguard configuration: keys must be strings")
    return build_config(**data)
