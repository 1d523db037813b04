"""The fleet on Redis (or Valkey): one cache and instant revocation across processes.

Install with ``pip install tokenguard[redis]`` and pass a :class:`RedisFleet` to the
guard (or configure ``[fleet]``)::

    from tokenguard.redis import RedisFleet

    guard = TokenGuard(issuers=[...], policies=[...],
                       fleet=RedisFleet("redis://cache:6379/0", os.environ["TG_FLEET_SECRET"]))
    guard.revoke(token)          # refused by every process of the fleet at once

Every process of a fleet uses the same URL, secret and prefix. See ``docs/fleet.md`` for
the design, the trust model and what holds while Redis is down.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Literal

from .fleet.config import FleetSettings
from .fleet.keys import MIN_SECRET_BYTES, FleetKeys
from .fleet.tier import FleetCounters, FleetTier
from .shells.redis_store import RedisAsyncDriver, RedisListener, RedisSyncDriver

if TYPE_CHECKING:
    from .core.engine import Engine

__all__ = ["RedisFleet"]

log = logging.getLogger("tokenguard.fleet")


class RedisFleet:
    """Membership of one guard in a fleet sharing ``url`` (a Redis or Valkey server).

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``.
        secret: at least 32 bytes shared by every process of the fleet; entry names are
            HMACs under it and values are encrypted and authenticated with keys derived
            from it. Rotating it empties the shared cache (entries under the old secret
            are ignored) and forgets stored revocations: revoke again after a rotation.
        prefix: the namespace of the fleet's keys and channel.
        timeout: the bound of each Redis call in seconds (the default 0.25 s keeps a
            failing Redis from slowing validations down).
        lock_timeout: how long the flight lock of a token lives: the wait of the other
            processes when the one introspecting it dies, before one of them takes over
            (default: ``http_timeout`` + 1 s, so a slow answer is not asked for twice).
        startup_timeout: how long the guard's construction waits for the stored
            revocations to be loaded before it serves (without Redis it goes on after
            this, and catches up when Redis comes back).
        dpop_replay_when_down: a DPoP proof's ``jti`` is claimed across the fleet (a
            proof accepted by one process is refused by every other). When Redis cannot
            answer: ``"refuse"`` (default) refuses the proof with 503 and
            ``Retry-After``; ``"local"`` lets this process's own replay cache decide,
            so a proof replayed against another process passes until Redis is back.

    A fleet belongs to one guard; :meth:`TokenGuard.close` ends it.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        prefix: str = "tokenguard",
        timeout: float = 0.25,
        lock_timeout: float | None = None,
        startup_timeout: float = 2.0,
        dpop_replay_when_down: Literal["refuse", "local"] = "refuse",
    ) -> None:
        raw = secret if isinstance(secret, bytes) else None
        if raw is not None:
            if len(raw) < MIN_SECRET_BYTES:
                raise ValueError(f"the fleet secret must be at least {MIN_SECRET_BYTES} bytes")
            secret = "x" * MIN_SECRET_BYTES  # checked above; the bytes are used below
        settings = FleetSettings(
            redis_url=url,
            secret=secret,
            prefix=prefix,
            timeout=timeout,
            lock_timeout=lock_timeout,
            startup_timeout=startup_timeout,
            dpop_replay_when_down=dpop_replay_when_down,
        )
        self._init(settings, raw)

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> RedisFleet:
        """A fleet from the ``[fleet]`` configuration."""
        fleet = cls.__new__(cls)
        fleet._init(settings, None)
        return fleet

    def _init(self, settings: FleetSettings, raw_secret: bytes | None) -> None:
        self.settings = settings
        secret = raw_secret or settings.secret.get_secret_value().encode()
        self._keys = FleetKeys(secret, settings.prefix)
        self._tier: FleetTier | None = None
        self._listener: RedisListener | None = None
        self._sync: RedisSyncDriver | None = None
        self._async: RedisAsyncDriver | None = None
        self._lock = threading.Lock()

    # -- wiring (called by TokenGuard) ----------------------------------------------------

    def attach(self, engine: Engine) -> tuple[RedisSyncDriver, RedisAsyncDriver]:
        """Join ``engine`` to the fleet: start the revocation listener and wait (at most
        ``startup_timeout``) until the stored revocations are loaded."""
        with self._lock:
            if self._tier is not None:
                raise ValueError("this RedisFleet already belongs to a guard")
            settings = self.settings
            url = settings.redis_url.get_secret_value()
            # The flight lock outlives the holder's request (bounded by http_timeout) so
            # a slow authorization server is not asked twice; a holder that dies blocks
            # the others this long, then one of them takes over.
            lock_timeout = settings.lock_timeout or engine.settings.http_timeout + 1.0
            self._sync = RedisSyncDriver(url, settings.timeout)
            self._async = RedisAsyncDriver(url, settings.timeout)
            self._tier = FleetTier(
                self._keys,
                engine.revocations,
                forget_digest=engine.forget_digest,
                lock_timeout=lock_timeout,
                max_wait=lock_timeout + engine.settings.http_timeout,
                max_entry_bytes=2 * engine.settings.max_introspection_bytes + 4096,
                dpop_replay_when_down=settings.dpop_replay_when_down,
            )
            engine.fleet = self._tier
            self._engine = engine
            self._listener = RedisListener(self._tier, self._sync, url, settings.timeout)
        if not self._listener.start(settings.startup_timeout):
            log.warning(
                "fleet: stored revocations not loaded within %.1fs (Redis unavailable?); "
                "serving, and catching up when Redis answers",
                settings.startup_timeout,
            )
        return self._sync, self._async

    def close(self) -> None:
        """Leave the fleet: stop listening and close the sync client. The guard goes on
        with its local caches and revocations."""
        with self._lock:
            listener, self._listener = self._listener, None
            if self._tier is not None and self._engine.fleet is self._tier:
                self._engine.fleet = None
        if listener is not None:
            listener.stop()
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """:meth:`close`, and close the asyncio client of the running loop."""
        if self._async is not None:
            await self._async.aclose()
        self.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        """Whether the revocation channel is subscribed and caught up right now."""
        return self._listener is not None and self._listener.synced.is_set()

    def wait_in_sync(self, timeout: float) -> bool:
        """Wait until the revocation channel is subscribed and caught up."""
        listener = self._listener
        return listener is not None and listener.synced.wait(timeout)

    @property
    def pending(self) -> int:
        """Revocations made while Redis was unavailable, not yet written to it."""
        return 0 if self._tier is None else self._tier.pending

    @property
    def counters(self) -> FleetCounters:
        """What the fleet tier saw: shared hits and misses, flights, rejected entries."""
        if self._tier is None:
            return FleetCounters()
        return self._tier.counters

    def __repr__(self) -> str:
        return f"RedisFleet(prefix={self.settings.prefix!r}, in_sync={self.in_sync})"
