"""The RFC 8935 push endpoint as a plain ASGI application (no framework needed).

It reads the request, hands the SET to :meth:`TokenGuard.ahandle_security_event` and
writes the answer: ``202 Accepted`` with an empty body, or the RFC 8935 §2.3 error
``{"err": ..., "description": ...}`` (400; 401 for ``authentication_failed``), 503 with
``Retry-After`` when the transmitter's keys cannot be fetched (the transmitter retries).
Every rule is the guard's; this module only moves bytes.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .. import SecurityEventError, TokenGuard, TokenGuardError, ValidationUnavailable

__all__ = ["SetReceiver"]

log = logging.getLogger("tokenguard.events")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_MEDIA_TYPE = "application/secevent+jwt"


class _Refused(Exception):
    def __init__(
        self, status: int, err: str, description: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ):
        self.status, self.err, self.description, self.headers = status, err, description, headers


class SetReceiver:
    """An ASGI app receiving Security Event Tokens by push (RFC 8935).

    Args:
        guard: the guard whose revocations the events feed (and, through it, the fleet).
        issuer: the transmitter's issuer (the SET's ``iss``); its keys are the configured
            issuer's unless ``jwks_uri`` is given.
        audience: this recipient's identifier, which the SET's ``aud`` must contain.
        jwks_uri: the transmitter's key set, when it is not a configured issuer (or signs
            events with other keys than tokens).
        authorization: if set, the exact ``Authorization`` header value the transmitter
            must send (e.g. ``"Bearer <secret>"``, agreed when the stream was set up);
            compared in constant time.
        max_body: the largest SET accepted, in bytes.
    """

    def __init__(
        self,
        guard: TokenGuard,
        *,
        issuer: str,
        audience: str,
        jwks_uri: str | None = None,
        authorization: str | None = None,
        max_body: int = 64 * 1024,
    ) -> None:
        self.guard = guard
        self.issuer = issuer
        self.audience = audience
        self.jwks_uri = jwks_uri
        self._authorization = authorization.encode() if authorization is not None else None
        self._max_body = max_body

    def __repr__(self) -> str:
        return f"SetReceiver(issuer={self.issuer!r}, audience={self.audience!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            token = await self._read(scope, receive)
            event = await self.guard.ahandle_security_event(
                token, issuer=self.issuer, audience=self.audience, jwks_uri=self.jwks_uri
            )
        except _Refused as refused:
            await _error(send, refused.status, refused.err, refused.description, refused.headers)
        except SecurityEventError as error:
            log.info("security event refused: %s", error.err)
            await _error(send, error.status_code, error.err, error.description)
        except ValidationUnavailable as error:
            retry = str(error.retry_after or 30).encode()
            await _error(
                send, 503, "temporarily_unavailable", error.description, ((b"retry-after", retry),)
            )
        except TokenGuardError as error:
            await _error(send, error.status_code, "invalid_request", error.description)
        else:
            if event.cutoffs and not event.duplicate:
                log.info("security event applied: %d subject cut-offs", len(event.cutoffs))
            await send(
                {
                    "type": "http.response.start",
                    "status": 202,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})

    async def _read(self, scope: Scope, receive: Receive) -> str:
        if scope.get("method") != "POST":
            raise _Refused(
                405,
                "invalid_request",
                "Security events are delivered by POST",
                ((b"allow", b"POST"),),
            )
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        if self._authorization is not None:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._authorization):
                raise _Refused(
                    401, "authentication_failed", "The transmitter is not authenticated",
                    ((b"www-authenticate", b"Bearer"),),
                )  # fmt: skip
        media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media != _MEDIA_TYPE.encode():
            raise _Refused(
                400, "invalid_request", "The content type must be application/secevent+jwt"
            )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise _Refused(413, "invalid_request", "The security event is too large")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "invalid_request", "The request ended early")
            body += message.get("body", b"")
            if len(body) > self._max_body:
                raise _Refused(413, "invalid_request", "The security event is too large")
            if not message.get("more_body", False):
                break
        try:
            return bytes(body).decode("ascii").strip()
        except UnicodeDecodeError:
            raise _Refused(400, "invalid_request", "The body is not a JWT") from None


async def _error(
    send: Send,
    status: int,
    err: str,
    description: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    body = json.dumps({"err": err, "description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
