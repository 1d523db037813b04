"""TokenGuard: the object a resource server holds to validate access tokens."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .config import GuardConfig, Issuer, Policy, Settings, build_config, load_config
from .core.dpop import DPoPProof
from .core.engine import Engine
from .core.events import SecurityEvent
from .errors import InvalidToken, TokenGuardError
from .models import TokenInfo

if TYPE_CHECKING:
    # The shells (and with them httpx and asyncio) are imported when a guard first needs
    # one, not by `import tokenguard` (cold start, issue 10 §4).
    import httpx

    from .core.mtls import ClientCertificate
    from .shells.aio import AsyncShell
    from .shells.limits import Capacities
    from .shells.sync import SyncShell

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .otel import Instrumentation
    from .redis import RedisFleet
    from .stats import GuardStats

__all__ = ["TokenGuard"]


class TokenGuard:
    """Validates OAuth 2.0 access tokens against per-audience policies.

    JWTs (RFC 9068) are verified locally against the issuer's JWKS; opaque tokens are
    introspected (RFC 7662); ``high_assurance`` policies do both. Sync (:meth:`validate`)
    and async (:meth:`avalidate`) share one configuration, one set of caches and one
    set of rules. The guard owns the HTTP clients it creates; pass ``http_client`` /
    ``async_http_client`` to use your own (tokenguard still refuses redirects,
    compression and oversized or slow answers on them).

    Example::

        guard = TokenGuard(
            issuers=[Issuer("https://as.example.com", client_auth=ClientSecretBasic("rs", "pw"))],
            policies=[Policy(name="orders", audience="urn:orders", required_scopes=["o:read"])],
        )
        info = guard.validate(token, policy="orders")
    """

    def __init__(
        self,
        issuers: Iterable[Issuer | Mapping[str, Any]],
        policies: Iterable[Policy | Mapping[str, Any]],
        *,
        settings: Settings | Mapping[str, Any] | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        fleet: RedisFleet | None = None,
    ) -> None:
        data: dict[str, Any] = {"issuers": tuple(issuers), "policies": tuple(policies)}
        if settings is not None:
            data["settings"] = settings
        self._init(build_config(**data), http_client, async_http_client, fleet)

    def _init(
        self,
        config: GuardConfig,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
        fleet: RedisFleet | None = None,
    ) -> None:
        self._engine = Engine(config)
        self._generic_errors = config.settings.error_descriptions == "generic"
        if fleet is None and config.fleet is not None:
            from .redis import RedisFleet

            fleet = RedisFleet.from_settings(config.fleet)
        self._fleet = fleet
        self._stores: tuple[Any, Any] = (
            fleet.attach(self._engine) if fleet is not None else (None, None)
        )
        self._clients = (http_client, async_http_client)
        if http_client is not None or async_http_client is not None:
            _warn_mutual_tls(config)
        self._shells_lock = threading.Lock()
        self._sync_shell: SyncShell | None = None
        self._async_shell: AsyncShell | None = None
        self._capacities: Capacities | None = None

    def _shared_capacities(self) -> Capacities:
        """One bound on introspections in flight per issuer, shared by both shells
        (called with ``_shells_lock`` held)."""
        if self._capacities is None:
            from .shells.limits import Capacities

            settings = self._engine.settings
            self._capacities = Capacities(
                settings.max_concurrent_introspections, settings.introspection_queue_wait
            )
        return self._capacities

    @property
    def _sync(self) -> SyncShell:
        shell = self._sync_shell
        if shell is None:
            with self._shells_lock:  # one shell per guard: single-flight lives in it
                if self._sync_shell is None:
                    from .shells.sync import SyncShell

                    timeout = self._engine.settings.http_timeout
                    self._sync_shell = SyncShell(
                        timeout,
                        self._clients[0],
                        self._stores[0],
                        capacities=self._shared_capacities(),
                        observer=self._engine.observer,
                    )
                shell = self._sync_shell
        return shell

    @property
    def _async(self) -> AsyncShell:
        shell = self._async_shell
        if shell is None:
            with self._shells_lock:
                if self._async_shell is None:
                    from .shells.aio import AsyncShell

                    timeout = self._engine.settings.http_timeout
                    self._async_shell = AsyncShell(
                        timeout,
                        self._clients[1],
                        self._stores[1],
                        capacities=self._shared_capacities(),
                        observer=self._engine.observer,
                    )
                shell = self._async_shell
        return shell

    @classmethod
    def from_config(
        cls,
        source: str | Path | Mapping[str, Any],
        *,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        fleet: RedisFleet | None = None,
    ) -> Self:
        """Build a guard from a TOML file or a mapping (see :func:`tokenguard.load_config`);
        a ``[fleet]`` table joins it to a fleet (``tokenguard[redis]``)."""
        guard = cls.__new__(cls)
        guard._init(load_config(source), http_client, async_http_client, fleet)
        return guard

    @property
    def config(self) -> GuardConfig:
        """The validated configuration."""
        return self._engine.config

    def validate(
        self,
        token: str | None,
        policy: str | Policy | None = None,
        *,
        dpop: DPoPProof | None = None,
        client_certificate: ClientCertificate | None = None,
    ) -> TokenInfo:
        """Validate ``token`` under ``policy`` (a policy name; optional if only one is
        configured). Returns a :class:`TokenInfo` or raises a
        :class:`~tokenguard.TokenGuardError` subclass carrying the HTTP status and the
        policy's challenge (``error.headers()``).

        Sender-constrained tokens: pass ``dpop=DPoPProof(proof, method, url)`` with the
        request's ``DPoP`` header (``None`` when it had none) and the scheme that carried
        the token; pass ``client_certificate`` (PEM or DER) for certificate-bound tokens
        (RFC 8705). A DPoP-bound token then passes with a valid proof, and a bound token
        whose binding the request does not prove is refused.
        """
        try:
            step = self._engine.start(token, policy, dpop, client_certificate)
            if isinstance(step, TokenInfo):
                return step
            listener = self._engine.observer.listener
            if listener is None:
                return self._sync.run(step)
            with listener.validation():
                return self._sync.run(step)
        except TokenGuardError as error:
            self._refused(error, policy, dpop)
            raise

    async def avalidate(
        self,
        token: str | None,
        policy: str | Policy | None = None,
        *,
        dpop: DPoPProof | None = None,
        client_certificate: ClientCertificate | None = None,
    ) -> TokenInfo:
        """The async twin of :meth:`validate`: same rules, same caches."""
        try:
            step = self._engine.start(token, policy, dpop, client_certificate)
            if isinstance(step, TokenInfo):
                return step
            listener = self._engine.observer.listener
            if listener is None:
                return await self._async.run(step)
            with listener.validation():
                return await self._async.run(step)
        except TokenGuardError as error:
            self._refused(error, policy, dpop)
            raise

    def challenge(self, error: TokenGuardError, policy: str | Policy | None = None) -> None:
        """Set ``error.challenge`` to what ``policy`` accepts (``Bearer`` and/or ``DPoP``
        with its ``algs``, RFC 9449 §7.1), as :meth:`validate` does for the errors it
        raises: for an error an integration raises itself (no token, a malformed
        ``Authorization`` header), so its ``WWW-Authenticate`` offers the right schemes."""
        self._engine.challenge(error, policy, None)

    def _refused(
        self, error: TokenGuardError, policy: str | Policy | None, dpop: DPoPProof | None
    ) -> None:
        self._engine.challenge(error, policy, dpop)
        if self._generic_errors and isinstance(error, InvalidToken):
            _generic(error)

    def dpop_nonce(self) -> str:
        """The DPoP nonce to hand out now (``DPoP-Nonce`` header, RFC 9449 §9), for
        policies with ``dpop_nonce=True``; nonces stay good for about 4 minutes."""
        return self._engine.binder.nonces.current(time.time())

    def warm_up(self) -> dict[str, bool]:
        """Fetch every issuer's keys (or metadata) before the first token needs them;
        return, per issuer, whether it is usable now (fresh or last-known-good keys,
        known metadata). Cached and backing-off fetches are not repeated, so this is
        cheap to call often (a readiness probe)."""
        return self._sync.run(self._engine.warm_up())

    async def awarm_up(self) -> dict[str, bool]:
        """The async twin of :meth:`warm_up`."""
        return await self._async.run(self._engine.warm_up())

    def forget(self, token: str) -> None:
        """Drop every cached answer about ``token`` in this process (for example on a
        revocation event). An answer requested before the call returns is neither
        cached nor served after it; the token is not refused (see :meth:`revoke`)."""
        self._engine.forget(token)

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from now on, in every process of the fleet (or in this one
        without a fleet), until it would have expired anyway; every cached answer about
        it is dropped. A JWT is revoked by what was signed, so a second encoding of the
        same token (ECDSA signatures are malleable) is refused too, and by issuer and
        ``jti`` when its signature verifies."""
        self._sync.run(self._engine.revoke(token))

    async def arevoke(self, token: str) -> None:
        """The async twin of :meth:`revoke`."""
        await self._async.run(self._engine.revoke(token))

    def revoke_subject(
        self, subject: str, *, issuer: str | None = None, before: float | datetime | None = None
    ) -> None:
        """Refuse every token of ``subject`` (``sub``) issued before ``before`` (default:
        now), JWTs included, without introspecting them; a token without ``iat`` cannot
        prove it is newer and is refused. ``issuer`` limits the cut-off to one issuer."""
        self._sync.run(self._engine.revoke_cutoff("subject", subject, issuer, before))

    async def arevoke_subject(
        self, subject: str, *, issuer: str | None = None, before: float | datetime | None = None
    ) -> None:
        """The async twin of :meth:`revoke_subject`."""
        await self._async.run(self._engine.revoke_cutoff("subject", subject, issuer, before))

    def revoke_client(
        self, client_id: str, *, issuer: str | None = None, before: float | datetime | None = None
    ) -> None:
        """Refuse every token issued to ``client_id`` before ``before`` (default: now);
        see :meth:`revoke_subject`."""
        self._sync.run(self._engine.revoke_cutoff("client", client_id, issuer, before))

    async def arevoke_client(
        self, client_id: str, *, issuer: str | None = None, before: float | datetime | None = None
    ) -> None:
        """The async twin of :meth:`revoke_client`."""
        await self._async.run(self._engine.revoke_cutoff("client", client_id, issuer, before))

    def handle_security_event(
        self, token: str, *, issuer: str, audience: str, jwks_uri: str | None = None
    ) -> SecurityEvent:
        """Verify a Security Event Token (RFC 8417) from ``issuer`` addressed to
        ``audience`` and apply the revocations it carries (CAEP session-revoked and
        credential-change, RISC account events: subject cut-offs across the fleet).
        Keys come from the configured issuer's JWKS, or from ``jwks_uri``. A SET already
        applied (same issuer and ``jti``) is acknowledged again without effect. Raises
        :class:`~tokenguard.SecurityEventError` (RFC 8935 §2.3 ``err``) or
        :class:`~tokenguard.ValidationUnavailable` (keys unreachable: retry later).
        :class:`tokenguard.events.SetReceiver` serves this as an RFC 8935 endpoint."""
        flow = self._engine.security_event(
            token, issuer=issuer, audience=audience, jwks_uri=jwks_uri
        )
        return self._sync.run(flow)

    async def ahandle_security_event(
        self, token: str, *, issuer: str, audience: str, jwks_uri: str | None = None
    ) -> SecurityEvent:
        """The async twin of :meth:`handle_security_event`."""
        flow = self._engine.security_event(
            token, issuer=issuer, audience=audience, jwks_uri=jwks_uri
        )
        return await self._async.run(flow)

    def stats(self) -> GuardStats:
        """What this guard has counted since it was made (this process): validations by
        policy, result and path, cache hits and misses, key-set refreshes, stale-key use,
        introspections and their latency, single-flight joins, the fleet's errors and
        circuit. Works without OpenTelemetry; :mod:`tokenguard.otel` exports the same
        counters as metrics. Counting costs one integer increment on the cached path."""
        from .stats import snapshot  # its models are built on first use, not at import

        return snapshot(self._engine)

    def instrument(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> Instrumentation:
        """Report to OpenTelemetry (needs ``tokenguard[otel]``): a span per validation
        that needed work with child spans for its requests, and the metrics of
        ``docs/observability.md``. Without providers, the application's global ones
        (a no-op until it configures an SDK). Returns the instrumentation; its
        ``uninstrument()`` stops it. See :func:`tokenguard.otel.instrument`."""
        from .otel import instrument

        return instrument(self, tracer_provider=tracer_provider, meter_provider=meter_provider)

    @property
    def fleet(self) -> RedisFleet | None:
        """The fleet this guard belongs to, if any."""
        return self._fleet

    def close(self) -> None:
        """Close the sync HTTP client the guard created (not one you passed in), and
        leave the fleet."""
        if self._sync_shell is not None:
            self._sync_shell.close()
        if self._fleet is not None:
            self._fleet.close()

    async def aclose(self) -> None:
        """Close the HTTP clients the guard created (not ones you passed in), and leave
        the fleet."""
        if self._async_shell is not None:
            await self._async_shell.aclose()
        if self._fleet is not None:
            await self._fleet.aclose()
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        issuers = [i.issuer for i in self._engine.config.issuers]
        return f"TokenGuard(issuers={issuers!r}, policies={list(self._engine.policies)!r})"


log = logging.getLogger("tokenguard")


def _warn_mutual_tls(config: GuardConfig) -> None:
    """A caller's httpx client presents the certificate it was configured with, not the
    one of a mutual-TLS client auth: say so once, at construction (the authorization
    server refuses a client without it, so introspection then fails closed, 503)."""
    for issuer in config.issuers:
        auth = issuer.client_auth
        if auth is not None and auth.tls_identity is not None:
            log.warning(
                "issuer %s uses %s: a caller-supplied httpx client must itself present the "
                "client certificate (httpx.Client(verify=ssl_context) with load_cert_chain)",
                issuer.issuer,
                auth.method,
            )


def _generic(error: InvalidToken) -> None:
    # Settings.error_descriptions = "generic": one description for every 401, so the
    # order and wording of the checks tell an unsigned probe nothing.
    error.description = InvalidToken.default_description
    error.args = (error.description,)
