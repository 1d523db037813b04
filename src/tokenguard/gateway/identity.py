"""Identity headers for the upstream, built from a validated token.

Values come from claims, which the token's issuer chose: each is sanitised so that no
value can end the header or start another (percent-encoding, as in RFC 3986, of every
octet outside visible ASCII and of ``%`` itself), and bounded in length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidClaims
from ..models import TokenInfo

__all__ = ["IdentityWriter", "sanitize"]

_SAFE = re.compile(r"[\x21-\x24\x26-\x7E]*")  # visible ASCII without "%"


def sanitize(value: str) -> str:
    """``value`` with every character outside visible ASCII, and ``%``, percent-encoded
    as UTF-8 octets. The result holds no whitespace, control or non-ASCII character."""
    if _SAFE.fullmatch(value):
        return value
    out = []
    for ch in value:
        if "\x21" <= ch <= "\x7e" and ch != "%":
            out.append(ch)
        else:
            out.extend(f"%{octet:02X}" for octet in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _text(value: Any) -> str:
    # Strings as they are; numbers and booleans as JSON writes them; nothing else.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return ""


class IdentityWriter:
    """Turns a :class:`TokenInfo` into the configured identity headers (as ASGI bytes).

    Every configured header is always present on an allow, empty when the token has no
    such value: a proxy that copies these headers then overwrites any header of the same
    name the client sent, instead of letting it through.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], max_length: int) -> None:
        self._pairs = tuple((header.lower().encode("ascii"), source) for header, source in pairs)
        self._max_length = max_length
        self.empty: tuple[tuple[bytes, bytes], ...] = tuple((h, b"") for h, _ in self._pairs)

    def headers(self, info: TokenInfo) -> list[tuple[bytes, bytes]]:
        """The identity headers for ``info``; raises InvalidClaims (401) if one is too long."""
        out = []
        for header, source in self._pairs:
            if source == "subject":
                value = sanitize(_text(info.subject))
            elif source == "client_id":
                value = sanitize(_text(info.client_id))
            elif source == "issuer":
                value = sanitize(info.issuer or "")
            elif source == "scopes":
                value = " ".join(sanitize(s) for s in sorted(info.scopes))
            else:
                value = sanitize(_text(info.claims.get(source[6:])))
            if len(value) > self._max_length:
                # Never truncate: two truncated identities could be taken for one.
                raise InvalidClaims("An identity claim is too long to forward")
            out.append((header, value.encode("ascii")))
        return out
