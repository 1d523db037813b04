"""What the core asks the shells to do over HTTP, and what they hand back. No I/O.

The validation flow is a generator: when it needs the network it yields a
:class:`Fetch`; a shell (sync or async) performs the request once per ``key`` even when
many validations need it at the same moment, passes the outcome to ``Fetch.complete``
(core code that updates caches), and sends the value ``complete`` returned back into
every waiting flow. The request is only built (``build``) by the flow that performs it,
so a stampede of waiters does not, say, sign a client assertion each.

A shell may give up on a need without an answer: the exchange overran ``http_timeout``
while a flow was waiting for another flow's request, or the need's ``budget`` (the
introspections in flight for one issuer) stayed full for the short wait allowed. It then
raises :func:`gave_up`'s error into each waiting flow, instead of sending a value: no
``complete`` runs, so nothing is cached.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import ValidationUnavailable

__all__ = [
    "Fetch",
    "HeaderSource",
    "HttpFailure",
    "HttpOutcome",
    "HttpRequest",
    "HttpResponse",
    "ResponseReader",
    "TlsIdentity",
    "gave_up",
]


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class TlsIdentity:
    """A TLS client identity for mutual TLS (RFC 8705 §2): PEM file paths and the key's
    password. Compared by identity: each mutual-TLS client auth has one, and the shells
    make one TLS context per instance and keep its connections apart. Nothing of it is
    in the repr."""

    certfile: str = field(repr=False)
    keyfile: str | None = field(repr=False)
    password: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request to make. ``headers`` and ``form`` may hold credentials or a token:
    they are excluded from the repr. ``tls_identity``, when set, is presented in
    the TLS handshake (mutual-TLS client authentication)."""

    method: str
    url: str
    max_bytes: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    form: Mapping[str, str] | None = field(default=None, repr=False)
    tls_identity: TlsIdentity | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response whose body fitted within the request's ``max_bytes``."""

    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def media_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """The request produced no usable response (``reason`` is safe to log)."""

    reason: str


HttpOutcome = HttpResponse | HttpFailure


@dataclass(frozen=True, slots=True)
class Fetch:
    """One network need of a validation flow, shared by every flow with the same ``key``.

    ``budget``, when set, names a pool of concurrent requests this one draws from (the
    introspections of one issuer): the shells bound how many run at once per budget.
    """

    key: Hashable
    build: Callable[[], HttpRequest] = field(repr=False)
    complete: Callable[[HttpOutcome], Any] = field(repr=False)
    budget: Hashable | None = None


#: How long a flow refused for a full budget is told to wait before trying again.
BUSY_RETRY_AFTER = 1


def gave_up(why: Literal["overdue", "busy"]) -> ValidationUnavailable:
    """The error a shell raises into a waiting flow when it gives up on a need: the
    request it waited for overran its deadline, or its budget stayed full."""
    if why == "busy":
        return ValidationUnavailable(
            "Too many token introspections are in progress", retry_after=BUSY_RETRY_AFTER
        )
    return ValidationUnavailable("The authorization server did not answer in time")


class HeaderSource(Protocol):
    """Response headers as any client holds them (a mapping, httpx's, aiohttp's or
    ``http.client``'s): a later header of the same name replaces an earlier one."""

    def items(self) -> Iterable[tuple[str, Any]]: ...


class ResponseReader:
    """The rules for receiving a response, shared by both shells: at most ``max_bytes``
    of body, done before ``deadline`` (a monotonic time, so a server dribbling bytes
    cannot hold a request open).

    Requests ask for ``identity`` encoding. A server that compresses anyway is decoded
    here with the output bounded as it is produced, so a small compressed body cannot
    expand past ``max_bytes`` (no decompression bomb); an unknown encoding is refused.
    """

    def __init__(
        self, request: HttpRequest, status: int, headers: HeaderSource, deadline: float
    ) -> None:
        self._max = request.max_bytes
        self._deadline = deadline
        self._status = status
        self._headers = {name.lower(): value for name, value in headers.items()}
        self._body = bytearray()
        self._inflate: Any = None

    def check_head(self) -> HttpFailure | None:
        encoding = self._headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            # wbits: 16 + 15 reads gzip; 15 reads zlib-wrapped deflate.
            self._inflate = zlib.decompressobj(31 if "gzip" in encoding else 15)
        elif encoding not in ("", "identity"):
            return HttpFailure("unsupported content encoding")
        length = self._headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self._max):
            return HttpFailure("response too large")
        return None

    def feed(self, chunk: bytes, now: float) -> HttpFailure | None:
        if self._inflate is not None:
            room = self._max - len(self._body) + 1
            try:
                chunk = self._inflate.decompress(chunk, room)
            except zlib.error:
                return HttpFailure("bad compressed body")
            if self._inflate.unconsumed_tail:
                return HttpFailure("response too large")
        self._body += chunk
        if len(self._body) > self._max:
            return HttpFailure("response too large")
        if now > self._deadline:
            return HttpFailure("response too slow")
        return None

    def response(self) -> HttpOutcome:
        """The response, once the body is complete (a compressed body must have ended
        cleanly, its checksum included)."""
        if self._inflate is not None:
            if not self._inflate.eof or self._inflate.unused_data:
                return HttpFailure("bad compressed body")
            self._headers.pop("content-encoding", None)
        return HttpResponse(self._status, self._headers, bytes(self._body))
