"""The gateway's configuration: the guard's TOML (issuers, policies, settings) plus
``[[routes]]`` and an optional ``[gateway]`` table.

Loading checks everything up front and refuses an invalid file with the line and the
reason for each problem; no input value is echoed (it may be a secret).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..config import GuardConfig, read_toml
from ..errors import ConfigurationError
from .routes import CompiledRoute, RouteTable, compile_glob

__all__ = [
    "EventReceiverConfig",
    "GatewayConfig",
    "GatewaySettings",
    "IdentityHeaders",
    "RouteConfig",
    "load_gateway_config",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_PATH_GLOB = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
_HOST_GLOB = re.compile(
    r"(?:\*|[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)(?:\.(?:\*|[a-z0-9\-]+))*|\[[0-9a-f:.]+\]"
)
_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")  # RFC 6749 §3.3 scope-token
# Headers an identity header must never overwrite: framing, routing, credentials, and
# the headers the proxies use to describe the original request.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "dpop",
        "forwarded",
        "host",
        "keep-alive",
        "proxy-authorization",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "www-authenticate",
    }
)
# The gateway's own paths (decisions, operations): a receiver cannot be mounted there.
_GATEWAY_PATHS = ("/nginx", "/traefik", "/envoy", "/healthz", "/readyz", "/metrics", "/stats")
_RESERVED_PREFIXES = ("x-forwarded-", "x-original-", "x-envoy-", "x-tokenguard-", ":")


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError("a header name must be an HTTP token (letters, digits, -)")
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
        raise ValueError("this header is reserved and cannot carry identity")
    return name


class IdentityHeaders(BaseModel):
    """Headers a 200 answer carries for the upstream. A name of ``""`` turns one off.

    ``claims`` maps extra header names to claim names (string, number or boolean
    claims; others are left empty). Every value is sanitised: octets outside visible
    ASCII, and ``%``, are percent-encoded, so no value can start a new header.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    subject: str = "X-Auth-Subject"
    client_id: str = "X-Auth-Client-Id"
    scopes: str = "X-Auth-Scopes"
    issuer: str = "X-Auth-Issuer"
    claims: Mapping[str, str] = Field(default_factory=dict)

    @field_validator("subject", "client_id", "scopes", "issuer")
    @classmethod
    def _name(cls, value: str) -> str:
        return value if value == "" else _header_name(value)

    @field_validator("claims")
    @classmethod
    def _claim_headers(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for header, claim in value.items():
            _header_name(header)
            if not claim:
                raise ValueError("each claim header needs a claim name")
        return dict(value)

    @model_validator(mode="after")
    def _unique(self) -> IdentityHeaders:
        names = [n.lower() for n in (self.subject, self.client_id, self.scopes, self.issuer) if n]
        names += [n.lower() for n in self.claims]
        if len(set(names)) != len(names):
            raise ValueError("identity header names must be unique (case-insensitively)")
        return self

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(header, source) for each enabled header; source is a field or ``claim:NAME``."""
        fixed = [
            (header, field)
            for field, header in (
                ("subject", self.subject),
                ("client_id", self.client_id),
                ("scopes", self.scopes),
                ("issuer", self.issuer),
            )
            if header
        ]
        return (*fixed, *((header, f"claim:{claim}") for header, claim in self.claims.items()))


def _secret_from_env(data: Any, field: str) -> Any:
    """``FIELD_env = "NAME"`` in a table: the secret ``FIELD`` read from that variable."""
    key = f"{field}_env"
    if isinstance(data, Mapping) and key in data:
        data = dict(data)
        name = data.pop(key)
        if field in data:
            raise ValueError(f"give either {field} or {key}, not both")
        if not isinstance(name, str) or name not in os.environ:
            raise ValueError(f"the {key} variable is not set")
        data[field] = os.environ[name]
    return data


class EventReceiverConfig(BaseModel):
    """One ``[[gateway.events]]`` table: a Security Event Token receiver (RFC 8935 push
    delivery, :class:`tokenguard.events.SetReceiver`) served by the gateway at ``path``.
    A CAEP ``session-revoked`` or ``credential-change`` event, or a RISC account event,
    then refuses the subject's tokens at the next request, in every worker and gateway
    instance that shares the guard's ``[fleet]``.

    Attributes:
        path: where the transmitter posts (``/events``); not a decision or operations path.
        issuer: the transmitter's issuer (the SET's ``iss``); a configured issuer unless
            ``jwks_uri`` is given.
        audience: this gateway's identifier as a recipient (the SET's ``aud``).
        jwks_uri: the transmitter's key set, when it is not a configured issuer's.
        authorization_env: the environment variable holding the exact ``Authorization``
            header value the transmitter sends (agreed when the stream was set up).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    path: str = "/events"
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_uri: str | None = None
    authorization: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _authorization_from_env(cls, data: Any) -> Any:
        return _secret_from_env(data, "authorization")

    @field_validator("path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9\-._~]+)+", value) or any(
            segment in (".", "..") for segment in value.split("/")
        ):
            raise ValueError("path is a plain absolute path such as /events")
        return value


class GatewaySettings(BaseModel):
    """The ``[gateway]`` table.

    Attributes:
        realm: the ``realm`` of every ``WWW-Authenticate`` challenge (none by default).
        identity_headers: the identity headers' names (see :class:`IdentityHeaders`).
        max_identity_length: the longest identity header value forwarded; a token whose
            identity does not fit is refused (401) rather than truncated, since two
            truncated identities could be confused.
        access_log: write one structured (JSON) line per decision to stdout (in
            batches, at most 100 ms late): never a token, a claim value or a query.
        events: security-event receivers to serve (see :class:`EventReceiverConfig`).
        stats_token_env: the environment variable holding a bearer token for ``/stats``
            (``tokenguard stats --token-env``); with one, ``/stats`` answers only a
            request that presents it (``Authorization: Bearer ...``), from any address;
            without one, only requests from loopback addresses.
        opentelemetry: report the guard's spans and metrics to the process's global
            OpenTelemetry providers (``guard.instrument()``; needs ``tokenguard[otel]``),
            for example those ``opentelemetry-instrument tokenguard gateway ...`` sets up
            from ``OTEL_*`` variables.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    realm: str | None = None
    identity_headers: IdentityHeaders = IdentityHeaders()
    max_identity_length: int = Field(default=2048, ge=64, le=8192)
    access_log: bool = True
    events: tuple[EventReceiverConfig, ...] = ()
    stats_token: SecretStr | None = Field(default=None, min_length=16)
    opentelemetry: bool = False

    @field_validator("opentelemetry")
    @classmethod
    def _opentelemetry_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("opentelemetry") is None:
            raise ValueError("needs opentelemetry-api: pip install 'tokenguard[otel]'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _stats_token_from_env(cls, data: Any) -> Any:
        return _secret_from_env(data, "stats_token")


class RouteConfig(BaseModel):
    """One ``[[routes]]`` table.

    Attributes:
        path: a path glob (``/orders/*``, ``/orders/**``; see :mod:`tokenguard.gateway.routes`).
        host: an optional host glob (``api.example.com``, ``*.example.com``).
        methods: the methods this route covers (all if unset), upper case.
        policy: the policy tokens must pass (required unless ``public``).
        scopes: scopes required on this route beyond the policy's ``required_scopes``.
        public: let the request through without a token (no identity headers).
        name: the route's name in metrics and logs (default: its path glob).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    path: str
    host: str | None = None
    methods: tuple[str, ...] | None = None
    policy: str | None = None
    scopes: tuple[str, ...] = ()
    public: bool = False
    name: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _PATH_GLOB.fullmatch(value):
            raise ValueError("path must start with / and hold only URL path characters")
        segments = value.split("/")
        if any("**" in s and s != "**" for s in segments):
            raise ValueError("** must be a whole path segment (/a/**/b, /a/**)")
        if any(s in (".", "..") for s in segments):
            raise ValueError("path must not contain . or .. segments")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        lowered = value.lower()
        if not _HOST_GLOB.fullmatch(lowered):
            raise ValueError("host must be a host name (a label may be *), without port")
        return lowered

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty list matches nothing; leave methods unset for all")
        if any(not _TOKEN.fullmatch(m) or m != m.upper() for m in value):
            raise ValueError("methods must be upper-case HTTP method names")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not _SCOPE.fullmatch(s) for s in value):
            raise ValueError("each scope must be a scope-token (RFC 6749 section 3.3)")
        return value

    @model_validator(mode="after")
    def _public_or_policy(self) -> RouteConfig:
        if self.public and (self.policy is not None or self.scopes):
            raise ValueError("a public route takes no policy or scopes")
        if not self.public and self.policy is None:
            raise ValueError("a route needs a policy, or public = true")
        return self


class GatewayConfig(BaseModel):
    """A whole gateway configuration: the guard's, the routes and ``[gateway]``."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    guard: GuardConfig
    routes: tuple[RouteConfig, ...] = Field(min_length=1)
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="before")
    @classmethod
    def _nest_guard(cls, data: Any) -> Any:
        # The file is flat (the guard's TOML plus two tables); the model nests the guard.
        if isinstance(data, Mapping) and "guard" not in data:
            data = dict(data)
            # Every table of the guard's own TOML goes to it, whatever the guard grows.
            data["guard"] = {k: data.pop(k) for k in GuardConfig.model_fields if k in data}
        return data

    def route_table(self) -> RouteTable:
        """The routes compiled for matching, in order."""
        required = {p.name: tuple(p.required_scopes) for p in self.guard.policies}
        return RouteTable(
            CompiledRoute(
                index=index,
                name=route.name or route.path,
                path=compile_glob(route.path, separator="/"),
                host=compile_glob(route.host, separator=".") if route.host else None,
                methods=frozenset(route.methods) if route.methods else None,
                policy=route.policy,
                # Named in an insufficient_scope challenge: every scope the route needs.
                scopes=tuple(sorted({*route.scopes, *(required.get(route.policy or "", ()))}))
                if route.scopes
                else (),
                public=route.public,
            )
            for index, route in enumerate(self.routes)
        )


def _cross_problems(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    policies = {p.name: p for p in config.guard.policies}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    issuers = {i.issuer for i in config.guard.issuers}
    paths: set[str] = set()
    for index, receiver in enumerate(config.gateway.events):
        where: tuple[str | int, ...] = ("gateway", "events", index)
        if receiver.jwks_uri is None and receiver.issuer not in issuers:
            problems.append(
                ((*where, "issuer"), "not a configured issuer: configure it or give jwks_uri")
            )
        if (
            receiver.path in paths
            or receiver.path in _GATEWAY_PATHS
            or any(receiver.path.startswith(own + "/") for own in _GATEWAY_PATHS)
        ):
            problems.append(((*where, "path"), "this path is taken"))
        paths.add(receiver.path)
    for index, route in enumerate(config.routes):
        if route.policy is None:
            continue
        policy = policies.get(route.policy)
        if policy is None:
            problems.append((("routes", index, "policy"), "no policy of this name is configured"))
        elif policy.allow_sender_constrained:
            # That (deprecated) flag accepts a bound token offered without any proof; the
            # gateway hands the guard the DPoP proof and client certificate it receives.
            problems.append(
                (
                    ("routes", index, "policy"),
                    "allow_sender_constrained = true would let a DPoP- or certificate-bound "
                    "token through without its proof: remove it (the gateway passes the "
                    "proof and the client certificate to the guard)",
                )
            )
    return problems


def load_gateway_config(source: str | Path | Mapping[str, Any]) -> GatewayConfig:
    """Load and check a gateway configuration from a TOML file or a mapping.

    Raises :class:`~tokenguard.ConfigurationError` listing every problem as
    ``line N: where: reason`` (the line when the source is a file and it is known).
    """
    text: str | None = None
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        data, text = read_toml(source)  # errors name the file and the line
    locator = _Locator(text or "")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as error:
        items = error.errors(include_input=False, include_url=False)
        problems = [
            (_flat_loc(item["loc"]), item["msg"].removeprefix("Value error, "))
            for item in items
            # pydantic also reports a list that lost a bad item as too short: noise.
            if not (item["type"] == "too_short" and len(items) > 1)
        ]
        raise ConfigurationError(_report(problems, locator)) from None
    if problems := _cross_problems(config):
        raise ConfigurationError(_report(problems, locator))
    return config


def _flat_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    # Errors inside the nested guard model are reported where the file has them.
    parts = tuple(loc)
    if parts[:1] == ("guard",):
        parts = parts[1:]
    # A tagged union (client_auth) adds the tag as a location part; it is not in the file.
    return tuple(p for p in parts if not (isinstance(p, str) and p.startswith("client_secret_")))


def _report(problems: Sequence[tuple[tuple[str | int, ...], str]], locator: _Locator) -> str:
    lines = []
    for loc, message in problems:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        line = locator.line(loc)
        prefix = f"line {line}: " if line else ""
        lines.append(f"{prefix}{where or 'configuration'}: {message}")
    return "invalid gateway configuration: " + "; ".join(lines)


class _Locator:
    """Finds the line of a table or key in TOML text, for error messages.

    It understands the layout configuration files use: ``[table]``, ``[[array]]``,
    ``[table.sub]`` headers and ``key = value`` lines; anything else gives no line.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\s\"]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        # (header path, array index or None, line number, keys -> line)
        self._tables: list[tuple[str, int | None, int, dict[str, int]]] = []
        counts: dict[str, int] = {}
        current: dict[str, int] = {}
        self._tables.append(("", None, 0, current))
        for number, line in enumerate(text.splitlines(), start=1):
            if header := self._HEADER.match(line):
                name = re.sub(r"\s+", "", header.group(2)).replace('"', "")
                index = None
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                current = {}
                self._tables.append((name, index, number, current))
            elif key := self._KEY.match(line):
                current.setdefault(key.group(1).strip('"'), number)

    def line(self, loc: tuple[str | int, ...]) -> int | None:
        # The longest prefix of the location that names a table ("routes", 2) or
        # ("gateway", "identity_headers"); the next part, if a key in it, gives the line.
        for size in range(len(loc), 0, -1):
            head = loc[:size]
            index = head[-1] if isinstance(head[-1], int) else None
            names = head[:-1] if index is not None else head
            if any(isinstance(p, int) for p in names):
                continue
            name = ".".join(str(p) for p in names)
            for table, table_index, number, keys in self._tables[1:]:
                if table == name and table_index == index:
                    key = loc[size] if size < len(loc) else None
                    return keys.get(key, number) if isinstance(key, str) else number
        root = self._tables[0][3]
        return root.get(loc[0]) if loc and isinstance(loc[0], str) else None
