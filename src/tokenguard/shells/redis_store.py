"""The fleet's Redis I/O: store drivers for both shells and the revocation listener.

The drivers perform the store needs of :mod:`tokenguard.core.needs` with redis-py (the
sync client for the sync shell, ``redis.asyncio`` for the async one), every call bounded
by a short socket timeout and never retried here: a failure comes back as a
:class:`StoreFailure` and the core decides what follows. The listener is a daemon thread
holding the pub/sub subscription: it feeds every revocation it hears to the fleet tier,
notices a silent server by its missing PONGs, and on every (re)connection writes the
revocations that waited in the outbox and loads every stored one (catch-up) before it
reports the fleet as in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.needs import (
    StoreAdd,
    StoreDelete,
    StoreFailure,
    StoreGet,
    StoreOp,
    StoreOutcome,
    StorePublish,
    StorePut,
    StoreRange,
)
from ..fleet.tier import FleetTier

__all__ = ["RedisAsyncDriver", "RedisListener", "RedisSyncDriver"]

log = logging.getLogger("tokenguard.fleet")

_PING_EVERY = 1.0
_SILENCE = 3.0  # no PONG for this long: the server is gone (or paused)
_MAX_BACKOFF = 1.0
_CATCH_UP_LIMIT = 1_000_000


def client_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
        "client_name": "tokenguard",
    }


def _queue(pipe: Any, op: StoreOp) -> int:
    """Queue the commands of one op; returns how many results it produces."""
    if type(op) is StoreGet:
        pipe.mget(op.keys)
        return 1
    if type(op) is StorePut:
        pipe.set(op.key, op.value, px=max(int(op.ttl * 1000), 1), nx=op.only_if_absent)
        return 1
    if type(op) is StoreDelete:
        pipe.delete(*op.keys)
        return 1
    if type(op) is StoreAdd:
        pipe.zadd(op.key, {op.member: op.score})
        pipe.zremrangebyscore(op.key, "-inf", f"({op.drop_below!r}")
        pipe.expire(op.key, max(int(op.ttl) + 1, 1), gt=True)
        pipe.expire(op.key, max(int(op.ttl) + 1, 1), nx=True)
        return 4
    if type(op) is StoreRange:
        pipe.zrangebyscore(op.key, op.min_score, "+inf", start=0, num=op.limit)
        return 1
    if type(op) is StorePublish:
        pipe.publish(op.channel, op.message)
        return 1
    raise TypeError(f"unknown store operation {type(op).__name__}")


def _result(op: StoreOp, raw: list[Any]) -> Any:
    """One op's result from its raw command results (an error as a StoreFailure)."""
    for item in raw:
        if isinstance(item, Exception):
            return StoreFailure(_reason(item))
    first = raw[0]
    if type(op) is StorePut:
        return first is True
    if type(op) is StoreGet:
        return tuple(first)
    if type(op) is StoreRange:
        return tuple(first)
    if type(op) is StoreAdd:
        return None
    return first


def _results(ops: tuple[StoreOp, ...], counts: list[int], raw: list[Any]) -> StoreOutcome:
    out = []
    at = 0
    for op, count in zip(ops, counts, strict=True):
        out.append(_result(op, raw[at : at + count]))
        at += count
    return tuple(out)


def _reason(error: BaseException) -> str:
    """A log-safe reason (redis-py messages may name keys or the URL)."""
    if isinstance(error, redis.TimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, redis.ConnectionError | OSError):
        return "connection failed"
    if isinstance(error, redis.ResponseError):
        return "error reply " + (str(error).split(" ", 1)[0][:20] or "?")
    return type(error).__name__


class RedisSyncDriver:
    """Store needs over redis-py's sync client (a thread-safe connection pool)."""

    def __init__(self, url: str, timeout: float, *, client: redis.Redis | None = None) -> None:
        self.client = client or redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), **client_options(timeout)
        )

    def perform(self, ops: tuple[StoreOp, ...]) -> StoreOutcome:
        try:
            pipe = self.client.pipeline(transaction=False)
            counts = [_queue(pipe, op) for op in ops]
            raw = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as error:
            return StoreFailure(_reason(error))
        return _results(ops, counts, raw)

    def close(self) -> None:
        self.client.close()


class RedisAsyncDriver:
    """Store needs over ``redis.asyncio``: one client per event loop (a client's
    connections belong to the loop that made them), each closed when replaced."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            old, old_loop = self._client, self._loop
            self._client = redis.asyncio.Redis.from_url(
                self._url, retry=AsyncRetry(NoBackoff(), 0), **client_options(self._timeout)
            )
            self._loop = loop
            if old is not None and old_loop is not None and not old_loop.is_closed():
                old_loop.call_soon_threadsafe(lambda: old_loop.create_task(old.aclose()))
        return self._client

    async def perform(self, ops: tuple[StoreOp, ...]) -> StoreOutcome:
        try:
            client = self._redis()
            async with client.pipeline(transaction=False) as pipe:
                counts = [_queue(pipe, op) for op in ops]
                async with asyncio.timeout(self._timeout * 2):
                    raw = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError, TimeoutError) as error:
            return StoreFailure(_reason(error))
        return _results(ops, counts, raw)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


class RedisListener:
    """The revocation channel of one fleet tier, in a daemon thread."""

    def __init__(self, tier: FleetTier, driver: RedisSyncDriver, url: str, timeout: float):
        self._tier = tier
        self._driver = driver
        self._client = redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), **client_options(max(timeout, 1.0))
        )
        self._stop = threading.Event()
        self.synced = threading.Event()  # subscribed and caught up
        self.syncs = 0  # how many times it (re)synchronised
        self._thread = threading.Thread(target=self._run, name="tokenguard-fleet", daemon=True)
        self._down_logged = False

    def start(self, wait: float) -> bool:
        """Start listening; wait up to ``wait`` seconds for the first catch-up."""
        self._thread.start()
        return self.synced.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                self._session()
                backoff = 0.05
            except (redis.RedisError, OSError) as error:
                self.synced.clear()
                if not self._down_logged:
                    self._down_logged = True
                    log.warning(
                        "fleet revocation channel lost (%s): reconnecting; revocations made "
                        "meanwhile are loaded on reconnect",
                        _reason(error),
                    )
            except Exception:  # a bug must not kill the listener silently
                self.synced.clear()
                log.exception("fleet revocation listener failed; restarting it")
            # Jittered: a thousand processes that lost Redis together do not all come
            # back (and load every revocation) in the same instant.
            self._stop.wait(backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _session(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._tier.channel)
            self._catch_up()
            self.syncs += 1
            self.synced.set()
            if self._down_logged:
                self._down_logged = False
                log.warning("fleet revocation channel back: caught up with stored revocations")
            last_pong = last_ping = time.monotonic()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                now = time.monotonic()
                if message is not None:
                    if message["type"] == "message":
                        self._tier.receive(message["data"], time.time())
                    elif message["type"] == "pong":
                        last_pong = now
                if now - last_ping >= _PING_EVERY:
                    pubsub.ping()
                    last_ping = now
                if now - last_pong > _SILENCE:
                    raise redis.TimeoutError("no answer to PING")
        finally:
            self.synced.clear()
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()

    def _catch_up(self) -> None:
        """Write what waited in the outbox, then load every stored revocation."""
        now = time.time()
        waiting, ops = self._tier.outbox_ops(now)
        if ops:
            results = self._driver.perform(tuple(ops))
            if isinstance(results, StoreFailure):
                raise redis.ConnectionError(results.reason)
            self._tier.outbox_sent(waiting)
        loaded = self._driver.perform((self._tier.catch_up_op(now, _CATCH_UP_LIMIT),))
        if isinstance(loaded, StoreFailure) or isinstance(loaded[0], StoreFailure):
            raise redis.ConnectionError("catch-up failed")
        stored = loaded[0]
        for blob in stored:
            self._tier.receive(blob, now)
        known = self._tier.revocations.entries(now)
        if len(known) > len(stored):
            # Redis lost revocations (restarted without persistence, or failed over to
            # a replica behind): write back what this process knows.
            reseed = self._tier.reseed_ops(now)
            if reseed:
                self._driver.perform(tuple(reseed))
