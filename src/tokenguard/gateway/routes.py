"""The gateway's route table: which policy (or none) guards a forwarded request.

A route matches on a path glob, an optional host glob and optional methods; the first
route that matches wins, and a request no route matches is denied. Paths are matched in
a normalised form (see :func:`normalize_path`) so that encodings and dot segments
cannot steer a request past the route that an upstream would actually serve it from.

Glob syntax, for paths: ``*`` matches any characters within one segment (not ``/``),
``?`` one such character, ``**`` as a whole segment any number of segments (a trailing
``/**`` also matches the bare prefix: ``/orders/**`` matches ``/orders``). For hosts:
``*`` matches within one DNS label (not ``.``). Everything else matches literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["CompiledRoute", "RouteTable", "UnsafePath", "compile_glob", "normalize_path"]

# Bytes that must not appear in a path segment after percent-decoding: an encoded slash
# or backslash (servers disagree on whether it separates segments), NUL and controls.
_FORBIDDEN_DECODED = frozenset(b"/\\") | frozenset(range(0x20)) | {0x7F}
# A path made only of these, with no "//" and no "." segment, is already normal.
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,=:@]*)+")


class UnsafePath(ValueError):
    """The request path cannot be matched safely (ambiguous or malformed)."""


def normalize_path(target: str) -> str:
    """The path of a request target, normalised for matching.

    Drops the query and fragment; percent-decodes each segment (UTF-8); removes
    ``;parameters`` from segments (as servlet containers do); merges empty segments;
    resolves ``.`` and ``..`` (RFC 3986 §5.2.4). A trailing ``/`` is kept. Raises
    :class:`UnsafePath` for a target that is not an absolute path (or absolute URI),
    that holds a backslash, raw whitespace or controls, an encoded ``/``, ``\\``,
    NUL or control, invalid UTF-8, climbs above the root, or whose meaning depends
    on whether a server merges ``//`` before resolving ``..``.
    """
    if target.startswith(("http://", "https://")):  # absolute-form request target
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if _PLAIN_PATH.fullmatch(path) and "//" not in path and "/." not in path:
        return path  # the common case: nothing to decode or resolve
    if not path.startswith("/"):
        raise UnsafePath("the path must start with /")
    if any(ch <= " " or ch in "\\\x7f" for ch in path):
        raise UnsafePath("the path holds a backslash, whitespace or a control character")
    raw_segments = path.split("/")[1:]
    decoded_segments = [_decode_segment(raw) for raw in raw_segments]
    merged = _resolve([s for s in decoded_segments if s])
    # Servers differ on "//..": RFC 3986 keeps the empty segment (/a//../b is /a/b),
    # others merge slashes first (/b). Refuse a path whose meaning depends on it.
    if "" in decoded_segments[:-1] and _resolve(decoded_segments, keep_empty=True) != merged:
        raise UnsafePath("the path is ambiguous (empty and dot segments)")
    normalised = "/" + "/".join(merged)
    if raw_segments and decoded_segments[-1] in ("", ".", "..") and merged:
        normalised += "/"
    return normalised


def _decode_segment(raw: str) -> str:
    try:
        octets = raw.encode("latin-1")  # header values arrive as latin-1 text
    except UnicodeEncodeError:
        raise UnsafePath("the path is not a byte string") from None
    decoded = unquote_to_bytes(octets) if b"%" in octets else octets
    if any(byte in _FORBIDDEN_DECODED for byte in decoded):
        raise UnsafePath("the path holds an encoded separator or control character")
    try:
        segment = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafePath("the path is not valid UTF-8") from None
    return segment.split(";", 1)[0]  # path parameters, as servlet containers strip them


def _resolve(segments: list[str], *, keep_empty: bool = False) -> list[str]:
    """RFC 3986 §5.2.4 over decoded segments; with ``keep_empty``, empty segments count
    (the result has them merged away, to compare with the merged resolution)."""
    out: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if not out:
                raise UnsafePath("the path climbs above the root")
            out.pop()
            continue
        out.append(segment)
    return out if not keep_empty else [s for s in out if s]


def normalize_host(host: str | None) -> str | None:
    """Lower-case host name without port (IPv6 literals keep their brackets)."""
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else None
    return host.split(":", 1)[0].rstrip(".") or None


def compile_glob(pattern: str, *, separator: str) -> re.Pattern[str]:
    """Compile a path (``separator="/"``) or host (``"."``) glob to an anchored regex."""
    sep = re.escape(separator)
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if (
            separator == "/"
            and pattern.startswith("/**", i)
            and pattern[i + 3 : i + 4] in ("", "/")
        ):
            # "/**" as a whole segment: zero or more segments (so "/a/**" matches "/a").
            parts.append(f"(?:{sep}.*)?")
            i += 3
        elif pattern[i] == "*":
            parts.append(f"[^{sep}]*")
            i += 1
        elif pattern[i] == "?":
            parts.append(f"[^{sep}]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """One route ready for matching. ``scopes`` are every scope the route requires
    beyond what its policy already does."""

    index: int
    name: str
    path: re.Pattern[str]
    host: re.Pattern[str] | None
    methods: frozenset[str] | None
    policy: str | None
    scopes: tuple[str, ...]
    public: bool

    def matches(self, method: str, host: str | None, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.host is not None and (host is None or not self.host.fullmatch(host)):
            return False
        return self.path.fullmatch(path) is not None


class RouteTable:
    """Routes in configuration order; :meth:`match` returns the first that matches."""

    def __init__(self, routes: Iterable[CompiledRoute]) -> None:
        self.routes: Sequence[CompiledRoute] = tuple(routes)

    def match(self, method: str, host: str | None, path: str) -> CompiledRoute | None:
        """The first route for a normalised ``path`` (see :func:`normalize_path`)."""
        host = normalize_host(host)
        for route in self.routes:
            if route.matches(method, host, path):
                return route
        return None
