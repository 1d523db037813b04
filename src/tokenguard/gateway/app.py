"""The gateway as an ASGI application.

Decision endpoints (one per proxy contract, see :mod:`.contracts`): read the forwarded
request into plain values, find its route, call the guard, answer 200 with identity
headers or the error's status with its challenge. No validation rule lives here.

Operations: ``/healthz`` (the process answers), ``/readyz`` (every issuer's keys or
metadata usable, fetched if needed), ``/metrics`` (Prometheus: the gateway's decisions and
the guard's counters), ``/stats`` (the guard's counters as JSON, ``guard.stats()``: to
loopback clients, or to the bearer of ``[gateway] stats_token_env``; with several
workers, the answering worker's).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from ..edge import Protection, RequestView
from ..errors import InvalidRequest, TokenGuardError
from ..guard import TokenGuard
from ..models import TokenInfo
from .accesslog import AccessLog
from .config import GatewayConfig, load_gateway_config
from .contracts import CONTRACTS, Contract, Forwarded, decode_certificate
from .identity import IdentityWriter
from .metrics import CONTENT_TYPE, GatewayMetrics, UpstreamWatch
from .responses import Answer, denial, unmatched
from .routes import CompiledRoute, UnsafePath, normalize_path

__all__ = ["GatewayApp", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tokenguard.gateway")

_ENVOY = "/envoy"
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


def create_app(
    config: GatewayConfig | str | Path | Mapping[str, Any],
    *,
    guard: TokenGuard | None = None,
) -> GatewayApp:
    """The gateway ASGI app for a configuration (a :class:`GatewayConfig`, a TOML file
    path or a mapping). ``guard`` replaces the guard built from the configuration (its
    policies must include those the routes name)."""
    if not isinstance(config, GatewayConfig):
        config = load_gateway_config(config)
    return GatewayApp(config, guard=guard)


class GatewayApp:
    """The forward-auth ASGI application (see the module docstring)."""

    def __init__(self, config: GatewayConfig, *, guard: TokenGuard | None = None) -> None:
        self.config = config
        self.routes = config.route_table()
        self.metrics = GatewayMetrics()
        self._cache_hit = self.metrics.token_cache.labels("hit")
        self._cache_miss = self.metrics.token_cache.labels("miss")
        settings = config.gateway
        self._identity = IdentityWriter(
            settings.identity_headers.pairs(), settings.max_identity_length
        )
        self._access_log = AccessLog() if settings.access_log else None
        if guard is None:
            # The guard's own HTTP clients (aiohttp for the async shell this app uses):
            # every request it makes is timed through its observer (UpstreamWatch).
            # The guard's configuration as checked, every part of it (from_config takes
            # the models as they are).
            guard_config = config.guard
            parts = {name: getattr(guard_config, name) for name in type(guard_config).model_fields}
            guard = TokenGuard.from_config(parts)
        guard._engine.observer.on_exchange = UpstreamWatch(self.metrics)
        if settings.opentelemetry:
            guard.instrument()  # the process's global providers
        self.guard = guard
        # Per route: the policy, the route's scopes and the challenge's realm, by the
        # rules every framework adapter shares (tokenguard.edge). Errors before a route
        # is known are answered as the first policy's.
        self._protections = {
            index: Protection(guard, route.policy, scopes=route.scopes, realm=settings.realm)
            for index, route in enumerate(config.routes)
            if route.policy is not None
        }
        self._fallback = Protection(guard, guard.config.policies[0].name, realm=settings.realm)
        # Operations endpoints by path.
        self._endpoints: dict[str, Callable[[Scope, Send], Awaitable[None]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/stats": self._stats,
        }
        token = settings.stats_token
        self._stats_authorization = (
            b"bearer " + token.get_secret_value().encode() if token is not None else None
        )
        self._mounts: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {}
        for receiver in settings.events:
            from ..events import SetReceiver  # only gateways that receive events load it

            secret = receiver.authorization
            self.mount(
                receiver.path,
                SetReceiver(
                    guard,
                    issuer=receiver.issuer,
                    audience=receiver.audience,
                    jwks_uri=receiver.jwks_uri,
                    authorization=secret.get_secret_value() if secret is not None else None,
                ),
            )

    def mount(self, prefix: str, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        """Serve another ASGI app under ``prefix`` in this one: the security-event
        receiver (RFC 8935 push delivery), so that a revocation reaches the guard of the
        worker that receives it. The decision and operations paths cannot be taken."""
        if not prefix.startswith("/") or prefix.endswith("/") or len(prefix) < 2:
            raise ValueError("a mount prefix looks like /events")
        taken = (*CONTRACTS, *self._endpoints)
        if any(p == prefix or p.startswith(prefix + "/") for p in taken):
            raise ValueError("this prefix is one of the gateway's own paths")
        self._mounts[prefix] = app

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            contract = CONTRACTS.get(path)
            if contract is not None and contract.target is not None:
                await self._decide(contract, scope, send, None)
            elif path == _ENVOY or path.startswith(_ENVOY + "/"):
                raw: bytes = scope.get("raw_path") or path.encode("utf-8")
                target = raw[len(_ENVOY) :].decode("latin-1") or "/"
                if query := scope.get("query_string"):
                    target += "?" + query.decode("latin-1")
                await self._decide(CONTRACTS[_ENVOY], scope, send, target)
            elif (endpoint := self._endpoints.get(path)) is not None:
                await endpoint(scope, send)
            elif mounted := self._mounted(path):
                prefix, app = mounted
                # As ASGI servers and Starlette do: the path stays whole, root_path grows.
                child = {**scope, "root_path": scope.get("root_path", "") + prefix}
                await app(child, receive, send)
            else:
                await _send(send, 404, [_TEXT], b"not found\n")
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _mounted(
        self, path: str
    ) -> tuple[str, Callable[[Scope, Receive, Send], Awaitable[None]]] | None:
        for prefix, app in self._mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, app
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    ready = await self.guard.awarm_up()
                except TokenGuardError as error:  # never fatal: /readyz reports it
                    log.warning("warm-up failed: %s", error.description)
                else:
                    for issuer, ok in ready.items():
                        if not ok:
                            log.warning("issuer %s is not reachable yet", issuer)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Write the access log's last lines; close the guard's HTTP clients."""
        if self._access_log is not None:
            self._access_log.flush()
        await self.guard.aclose()

    # -- decisions --------------------------------------------------------------------

    async def _decide(
        self, contract: Contract, scope: Scope, send: Send, own_target: str | None
    ) -> None:
        started = time.perf_counter()
        route: CompiledRoute | None = None
        forwarded: Forwarded | None = None
        path: str | None = None
        cached: bool | None = None
        protection = self._fallback
        try:
            forwarded = contract.read(scope["headers"], scope["method"], own_target)
            try:
                path = normalize_path(forwarded.target)
            except UnsafePath as error:
                raise InvalidRequest(f"The request path is refused: {error}") from None
            route = self.routes.match(forwarded.method, forwarded.host, path)
            if route is None:
                answer = unmatched()
            elif route.public:
                answer = Answer(200, list(self._identity.empty))
            else:
                protection = self._protections[route.index]
                info = await self._validate(contract, forwarded, protection)
                cached = info.cached
                protection.authorize(info)  # the route's scopes and step-up
                answer = Answer(200, self._identity.headers(info))
        except TokenGuardError as error:
            answer = denial(protection.reply(error), error)
            if isinstance(error, InvalidRequest) or error.status_code >= 500:
                log.info("%s request refused: %s", contract.name, error.description)
        if contract.status_header and answer.status != 200:
            # nginx can only answer with what it reads from headers (see contracts.py).
            answer.headers.append((b"x-tokenguard-status", str(answer.status).encode()))
            answer.headers.append((b"x-tokenguard-body", answer.body))
        await _send(send, answer.status, answer.headers, answer.body)
        elapsed = time.perf_counter() - started
        self._record(contract, route, forwarded, path, answer, cached, elapsed)

    async def _validate(
        self, contract: Contract, forwarded: Forwarded, protection: Protection
    ) -> TokenInfo:
        """The guard's answer for the forwarded credentials: a bearer token (read by the
        RFC 6750 rules the framework adapters share), or a DPoP-bound token with its
        proof (RFC 9449), and the client certificate (RFC 8705) when the proxy sent one."""
        found = protection.read(_view(contract, forwarded))
        return await self.guard.avalidate(
            found.token,
            protection.policy_name,
            dpop=found.dpop,
            client_certificate=found.client_certificate,
        )

    def _record(
        self,
        contract: Contract,
        route: CompiledRoute | None,
        forwarded: Forwarded | None,
        path: str | None,
        answer: Answer,
        cached: bool | None,
        elapsed: float,
    ) -> None:
        result = "allow" if answer.status == 200 else "deny"
        name = route.name if route is not None else "(none)"
        self.metrics.decision(name, result, answer.status, elapsed)
        if self.metrics.multiprocess and time.monotonic() - self.metrics.guard.synced_at > 1.0:
            # The guard's counters reach the other workers' scrapes through the files.
            self.metrics.guard.sync(self.guard.stats())
        if cached is not None:
            (self._cache_hit if cached else self._cache_miss).inc()
        if self._access_log is not None:
            # Never the token, a claim value or the query string (it may hold a token).
            self._access_log.write(
                {
                    "contract": contract.name,
                    "method": forwarded.method if forwarded else None,
                    "host": forwarded.host if forwarded else None,
                    "path": path,
                    "route": route.name if route else None,
                    "result": result,
                    "status": answer.status,
                    "error": answer.error,
                    "cached": cached,
                    "ms": round(elapsed * 1000, 3),
                }
            )

    # -- operations -------------------------------------------------------------------

    async def _healthz(self, scope: Scope, send: Send) -> None:
        await _send(send, 200, [_JSON, _NO_STORE], b'{"status":"ok"}')

    async def _readyz(self, scope: Scope, send: Send) -> None:
        try:
            issuers = await self.guard.awarm_up()
        except TokenGuardError:
            issuers = {}
        ready = bool(issuers) and all(issuers.values())
        body = json.dumps({"ready": ready, "issuers": issuers}).encode("utf-8")
        await _send(send, 200 if ready else 503, [_JSON, _NO_STORE], body)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        self.metrics.guard.sync(self.guard.stats())
        body = self.metrics.expose()
        await _send(send, 200, [(b"content-type", CONTENT_TYPE.encode("ascii"))], body)

    async def _stats(self, scope: Scope, send: Send) -> None:
        if not self._may_read_stats(scope):
            body = b'{"error":"forbidden"}'
            await _send(send, 403, [_JSON, _NO_STORE], body)
            return
        body = self.guard.stats().model_dump_json().encode("utf-8")
        await _send(send, 200, [_JSON, _NO_STORE], body)

    def _may_read_stats(self, scope: Scope) -> bool:
        """With a stats token: the request presents it (in constant time; any address).
        Without one: the request comes from a loopback address."""
        expected = self._stats_authorization
        if expected is not None:
            presented = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
            if len(presented) != 1:
                return False
            scheme, _, rest = presented[0].partition(b" ")
            return hmac.compare_digest(scheme.lower() + b" " + rest.strip(), expected)
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address is not None and address.is_loopback


def _view(contract: Contract, forwarded: Forwarded) -> RequestView:
    """The forwarded request as the adapters' shared module reads requests: the
    ``Authorization`` and ``DPoP`` headers the proxy passed on (each at most once: the
    contract refuses repeats), the query of the original URI, the absolute URL the client
    addressed (from the scheme and host the proxy says; without them a DPoP proof's
    ``htu`` cannot match and it fails) and the client certificate its header carries."""
    headers = {
        name: (value,)
        for name, value in (("authorization", forwarded.authorization), ("dpop", forwarded.dpop))
        if value is not None
    }
    return RequestView(
        method=forwarded.method,
        headers=lambda name: headers.get(name, ()),
        query=forwarded.target.partition("?")[2].partition("#")[0],
        url=lambda: forwarded.url() or "",
        client_certificate=decode_certificate(contract, forwarded.client_cert),
    )


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
