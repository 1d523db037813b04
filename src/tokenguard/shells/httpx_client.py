"""Adapters for an httpx client the caller passed in (``http_client=`` /
``async_http_client=``): tokenguard's rules on the caller's client.

Whatever the client is configured to do, a request made through it follows no redirect,
asks for no compression (and decodes a compressed answer with bounded output), reads at
most ``max_bytes`` and ends by its deadline:

* async: the whole exchange runs under ``asyncio.timeout_at(deadline)``;
* sync: httpx bounds each read, not an exchange, so the exchange runs on a worker thread
  and the caller stops waiting at the deadline. The worker lets go when the server stops
  sending or one read waits for ``http_timeout``; at most :data:`MAX_WORKERS` run at
  once, so a server that holds them all makes later requests fail at their deadline
  rather than start more threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

import httpx

from ..core.exchange import HttpFailure, HttpOutcome, HttpRequest, ResponseReader
from .transport import REQUEST_HEADERS

__all__ = ["HttpxAsyncClient", "HttpxSyncClient", "failure_reason"]

#: Threads a sync httpx client's exchanges may occupy at once (per guard).
MAX_WORKERS = 32


def _build(
    client: httpx.Client | httpx.AsyncClient, request: HttpRequest, timeout: float
) -> httpx.Request:
    return client.build_request(
        request.method,
        request.url,
        headers={**REQUEST_HEADERS, **request.headers},
        data=request.form,
        timeout=timeout,
    )


def failure_reason(error: httpx.HTTPError) -> str:
    """A log-safe reason for a transport failure (httpx messages may contain URLs)."""
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    if isinstance(error, httpx.ConnectError):
        return "connection failed"
    if isinstance(error, httpx.RemoteProtocolError):
        return "protocol error"
    return type(error).__name__


class HttpxAsyncClient:
    """Requests through the caller's ``httpx.AsyncClient`` (never closed by tokenguard)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self.client = client
        self._timeout = timeout

    async def perform(self, request: HttpRequest, deadline: float) -> HttpOutcome:
        client = self.client
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(
                    _build(client, request, self._timeout), stream=True, follow_redirects=False
                )
                try:
                    reader = ResponseReader(
                        request, response.status_code, response.headers, deadline
                    )
                    failure = reader.check_head()
                    if failure is not None:
                        return failure
                    async for chunk in response.aiter_raw():
                        failure = reader.feed(chunk, time.monotonic())
                        if failure is not None:
                            return failure
                    return reader.response()
                finally:
                    await response.aclose()
        except TimeoutError:
            return HttpFailure("timeout")
        except httpx.HTTPError as error:
            return HttpFailure(failure_reason(error))

    async def aclose(self) -> None:
        """Nothing: the client is the caller's."""


class HttpxSyncClient:
    """Requests through the caller's ``httpx.Client`` (never closed by tokenguard), each on
    a worker thread so that the caller's wait ends by the deadline."""

    def __init__(self, client: httpx.Client, timeout: float) -> None:
        self.client = client
        self._timeout = timeout  # of each read, connect and write
        self._workers = _Workers(MAX_WORKERS)

    def perform(self, request: HttpRequest, deadline: float) -> HttpOutcome:
        job = _Job(lambda: self._exchange(request, deadline), deadline)
        self._workers.submit(job)
        if job.done.wait(max(deadline - time.monotonic(), 0.0)) and job.outcome is not None:
            return job.outcome
        job.abandoned = True
        return HttpFailure("timeout")

    def _exchange(self, request: HttpRequest, deadline: float) -> HttpOutcome:
        client = self.client
        try:
            response = client.send(
                _build(client, request, self._timeout), stream=True, follow_redirects=False
            )
            try:
                reader = ResponseReader(request, response.status_code, response.headers, deadline)
                failure = reader.check_head()
                if failure is not None:
                    return failure
                for chunk in response.iter_raw():
                    failure = reader.feed(chunk, time.monotonic())
                    if failure is not None:
                        return failure
                return reader.response()
            finally:
                response.close()
        except httpx.HTTPError as error:
            return HttpFailure(failure_reason(error))

    def close(self) -> None:
        """Nothing: the client is the caller's."""


class _Job:
    __slots__ = ("abandoned", "deadline", "done", "outcome", "run")

    def __init__(self, run: Callable[[], HttpOutcome], deadline: float) -> None:
        self.run = run
        self.deadline = deadline
        self.done = threading.Event()
        self.outcome: HttpOutcome | None = None
        self.abandoned = False


class _Workers:
    """Up to ``limit`` daemon threads taking jobs in order; a job whose caller has given
    up (or whose deadline passed while it queued) is skipped."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._jobs: deque[_Job] = deque()
        self._idle = 0
        self._threads = 0
        self._wake = threading.Condition(self._lock)

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._idle:
                self._wake.notify()
            elif self._threads < self._limit:
                self._threads += 1
                threading.Thread(target=self._work, name="tokenguard-httpx", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._idle += 1
                    woken = self._wake.wait(timeout=30.0)
                    self._idle -= 1
                    if not woken and not self._jobs:
                        self._threads -= 1
                        return
                job = self._jobs.popleft()
            if job.abandoned or time.monotonic() >= job.deadline:
                job.outcome = HttpFailure("timeout")
            else:
                try:
                    job.outcome = job.run()
                except Exception as error:  # never lose a worker to a client's bug
                    job.outcome = HttpFailure(type(error).__name__)
            job.done.set()
