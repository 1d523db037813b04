"""Test switches of the authorization server: request counters, delays, forced answers."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from tokenguard.testing.transport import HTTPResponse

__all__ = ["Switchboard"]


@dataclass
class _Failure:
    response: HTTPResponse
    remaining: int | None


class Switchboard:
    """Thread-safe state of the test switches, keyed by endpoint name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._client_auth: Counter[tuple[str, str]] = Counter()
        self._delays: dict[str | None, float] = {}
        self._failures: dict[str, _Failure] = {}
        self._wake = threading.Event()

    def record(self, endpoint: str) -> None:
        """Count one request to ``endpoint``."""
        with self._lock:
            self._counts[endpoint] += 1

    def count(self, endpoint: str) -> int:
        """Requests to ``endpoint`` since the last reset."""
        with self._lock:
            return self._counts[endpoint]

    def record_client_auth(self, endpoint: str, method: str) -> None:
        """Count one client authenticated at ``endpoint`` with ``method``."""
        with self._lock:
            self._client_auth[(endpoint, method)] += 1

    def client_auth_count(self, endpoint: str, method: str) -> int:
        """Clients authenticated at ``endpoint`` with ``method`` since the last reset."""
        with self._lock:
            return self._client_auth[(endpoint, method)]

    def reset_counts(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._counts.clear()
            self._client_auth.clear()

    def set_delay(self, seconds: float, endpoint: str | None) -> None:
        """Delay answers of ``endpoint`` (``None``: of every endpoint without its own)."""
        with self._lock:
            if seconds > 0:
                self._delays[endpoint] = seconds
            else:
                self._delays.pop(endpoint, None)

    def delay(self, endpoint: str) -> None:
        """Sleep as configured for ``endpoint``; :meth:`interrupt` cuts the sleep short."""
        with self._lock:
            seconds = self._delays.get(endpoint, self._delays.get(None, 0.0))
            wake = self._wake
        if seconds:
            wake.wait(seconds)

    def interrupt(self) -> None:
        """Wake every request that is being delayed right now."""
        with self._lock:
            wake, self._wake = self._wake, threading.Event()
        wake.set()

    def set_failure(self, endpoint: str, response: HTTPResponse, times: int | None) -> None:
        """Answer ``endpoint`` with ``response`` (the next ``times`` requests, or all)."""
        with self._lock:
            self._failures[endpoint] = _Failure(response, times)

    def take_failure(self, endpoint: str) -> HTTPResponse | None:
        """The forced answer for this request to ``endpoint``, if any."""
        with self._lock:
            failure = self._failures.get(endpoint)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[endpoint]
            return failure.response

    def clear_failures(self) -> None:
        """Forget every forced answer."""
        with self._lock:
            self._failures.clear()

    def reset(self) -> None:
        """Clear counters, delays and forced answers; wake delayed requests."""
        with self._lock:
            self._counts.clear()
            self._client_auth.clear()
            self._delays.clear()
            self._failures.clear()
        self.interrupt()
