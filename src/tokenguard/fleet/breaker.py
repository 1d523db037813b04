"""When to stop asking a failing Redis for a while. No I/O.

After ``threshold`` failures in a row the breaker opens: Redis is skipped (validation
goes on with the local caches and the authorization server) for ``cooldown`` seconds;
then one call probes it. The outage and the recovery are logged once each.
"""

from __future__ import annotations

import logging
import math
import threading
import time

__all__ = ["Breaker"]

log = logging.getLogger("tokenguard.fleet")


class Breaker:
    """A thread-safe circuit breaker on the monotonic clock."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 5.0, outage_note: str = "") -> None:
        self._threshold = threshold
        self._note = outage_note
        self._cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def retry_after(self) -> int:
        """Whole seconds until Redis is asked again (at least 1)."""
        until = self._open_until
        if until is None:
            return 1
        return max(1, math.ceil(until - time.monotonic()))

    def allow(self) -> bool:
        """Whether to use Redis now (when open: one probe per cooldown)."""
        if self._open_until is None:
            return True
        now = time.monotonic()
        with self._lock:
            if self._open_until is None or now >= self._open_until:
                if self._open_until is not None:
                    self._open_until = now + self._cooldown  # this caller probes
                return True
        return False

    def success(self) -> None:
        if self._failures == 0 and self._open_until is None:
            return
        with self._lock:
            recovered = self._open_until is not None
            self._failures = 0
            self._open_until = None
        if recovered:
            log.warning("Redis is reachable again: the fleet cache and revocations are back")

    def failure(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            opened = self._open_until is None and self._failures >= self._threshold
            if opened:
                self.trips += 1
            if opened or self._open_until is not None:
                self._open_until = time.monotonic() + self._cooldown
        if opened:
            log.warning(
                "Redis unavailable (%s): validating with local caches and the authorization "
                "server until it recovers%s",
                reason,
                self._note,
            )
