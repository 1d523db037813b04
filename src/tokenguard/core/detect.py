"""Token format detection: a few string operations, no JSON parsing.

The result only routes the token (local verification or introspection). It never
decides where keys come from or which issuer is trusted.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re

__all__ = ["TokenFormat", "detect"]


class TokenFormat(enum.Enum):
    """What an access-token string looks like."""

    JWS = "jws"  # compact JWS: header.payload.signature
    JWE = "jwe"  # compact JWE: header.key.iv.ciphertext.tag
    OPAQUE = "opaque"  # anything else made of RFC 6750 b64token characters
    MALFORMED = "malformed"


# A JOSE header is the base64url encoding of a JSON object: its first segment decodes
# to "{" after optional JSON whitespace. That, and the dot count, is all detection uses.
_JWE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_JSON_WS = b" \t\r\n"
# base64url of a first byte "{" (0x7B, 011110 11): "e" (011110), then a character whose
# value starts with the bits 11 (48 to 63).
_OPEN_BRACE_SECOND = frozenset("wxyz0123456789-_")
# Every base64url character; deleting them from a JWS leaves exactly its two dots.
_B64URL_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _looks_like_jose_header(segment: str) -> bool:
    if segment[:1] == "e" and segment[1:2] in _OPEN_BRACE_SECOND:
        return True  # the first byte is "{" (the common case: no leading whitespace)
    # Decode at most the first 8 characters (6 bytes): enough to see the first byte
    # after a little whitespace, without decoding a large header.
    head = segment.partition(".")[0][:8]
    head += "=" * (-len(head) % 4)
    try:
        first = base64.urlsafe_b64decode(head).lstrip(_JSON_WS)[:1]
    except (ValueError, binascii.Error):
        return False
    return first == b"{"


def detect(token: str) -> TokenFormat:
    """Classify ``token`` as JWS, JWE, opaque or malformed.

    A string with the shape of a compact JWS/JWE whose first segment decodes to a JSON
    object is a JWS/JWE; any other string of RFC 6750 ``b64token`` characters is opaque;
    the rest (empty, whitespace, control or non-ASCII characters) is malformed.
    """
    if not token or not token.isascii():
        return TokenFormat.MALFORMED
    dots = token.count(".")
    if dots in (2, 4) and _looks_like_jose_header(token):
        # It claims to be JOSE: from here on it is a JWS/JWE or it is broken; it is
        # never re-classified as opaque (and so never sent to an introspection endpoint).
        if dots == 2:
            # [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*, without a regular expression
            # (several times faster on a long token): base64url characters and the two
            # dots only, header and payload not empty (the dots neither first nor adjacent).
            first = token.find(".")
            if (
                first == 0
                or token[first + 1] == "."
                or token.encode("ascii").translate(None, _B64URL_BYTES) != b".."
            ):
                return TokenFormat.MALFORMED
            return TokenFormat.JWS
        if not _JWE.fullmatch(token):
            return TokenFormat.MALFORMED
        return TokenFormat.JWE
    if _B64TOKEN.fullmatch(token):
        return TokenFormat.OPAQUE
    return TokenFormat.MALFORMED
