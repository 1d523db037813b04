"""detect(): JWS / JWE / opaque / malformed classification."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenguard.core.detect import TokenFormat, detect

from ._support import segment

HEADER = segment({"alg": "RS256", "typ": "at+jwt"})
PAYLOAD = segment({"sub": "alice"})
JWE_HEADER = segment({"alg": "RSA-OAEP", "enc": "A256GCM"})
SPACED_HEADER = segment(' {"alg":"RS256"}')


@pytest.mark.parametrize(
    "token",
    [
        f"{HEADER}.{PAYLOAD}.c2lnbmF0dXJl",
        f"{HEADER}.{PAYLOAD}.",  # empty signature is still JWS-shaped (refused later)
        # JSON whitespace before the opening brace is still a JOSE header.
        SPACED_HEADER + f".{PAYLOAD}.c2ln",
        segment('\n\t{"alg":"ES256"}') + f".{PAYLOAD}.c2ln",
    ],
)
def test_jws(token: str) -> None:
    assert detect(token) is TokenFormat.JWS


@pytest.mark.parametrize(
    "token",
    [
        f"{JWE_HEADER}.ZW5jcnlwdGVka2V5.aXY.Y2lwaGVydGV4dA.dGFn",
        f"{JWE_HEADER}..aXY.Y2lwaGVydGV4dA.dGFn",  # direct encryption: empty key segment
        f"{JWE_HEADER}...Y2lwaGVydGV4dA.",  # shape only: empty iv/tag are allowed here
    ],
)
def test_jwe(token: str) -> None:
    assert detect(token) is TokenFormat.JWE


@pytest.mark.parametrize(
    "token",
    [
        "2YotnFZFEjr1zCsicMWpAA",  # RFC 6749 example
        "mF_9.B5f-4.1JqM",  # RFC 6750 example: dots but no JOSE header
        "abc~def+ghi/jkl",
        "abc==",
        "abc=",
        "a",
        "a.b.c",
        "a.b.c.d.e",
        "a.b.c.d",  # three dots is never JOSE
        f"{HEADER}.{PAYLOAD}.sig.extra",  # JOSE-looking first segment but 3 dots
        "x" * 5000,
        "-._~+/",
    ],
)
def test_opaque(token: str) -> None:
    assert detect(token) is TokenFormat.OPAQUE


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "abc def",
        " abc",
        "abc ",
        "abc\t",
        "abc\n",
        "abc\x00",
        "\x00",
        "tökén",
        "abc\u00a0",
        "abc=def",  # '=' only as trailing padding
        "=abc",
        "abc,def",
        "abc;def",
        'ab"c',
        "abc\\def",
        "abc%20",
        # JWT-looking tokens with characters outside base64url are broken JWTs, never opaque.
        f"{HEADER}.{PAYLOAD}.sig+",
        f"{HEADER}.{PAYLOAD}.si/g",
        f"{HEADER}.pay+load.sig",
        f"{HEADER}=.{PAYLOAD}.sig",
        f"{HEADER}.{PAYLOAD}=.sig",
        f"{HEADER}.{PAYLOAD}.sig==",
        f"{HEADER}.{PAYLOAD}.sig~",
        f"{HEADER}..sig",  # JWS needs a payload segment
        f"{JWE_HEADER}.a.b.c.d+",
        f"{JWE_HEADER}.a.b..d",  # JWE ciphertext must not be empty
        # '+' or '/' inside the header itself, after a '{'-decoding start.
        "ey+hbGciOiJub25lIn0.e30.",
        "eyJ/bGciOiJub25lIn0.e30.c2ln",
    ],
)
def test_malformed(token: str) -> None:
    assert detect(token) is TokenFormat.MALFORMED


def test_non_jose_first_segment_with_two_dots_is_opaque() -> None:
    # First segment decodes to '[' not '{': not a JOSE header.
    token = f"{segment([1, 2, 3])}.{PAYLOAD}.c2ln"
    assert detect(token) is TokenFormat.OPAQUE


def test_undecodable_first_segment_is_opaque() -> None:
    # A first segment that is not base64 at all (length 1 mod 4) is not a JOSE header.
    assert detect("abcde.fgh.ijk") is TokenFormat.OPAQUE


@pytest.mark.parametrize("header", ["e30", "eyJ9", "IHt9"])
def test_short_jose_header_is_not_opaque(header: str) -> None:
    # 'e30' is base64url('{}'), 'eyJ9' of '{"}', 'IHt9' of ' {}': all start with '{', so the
    # token claims to be JOSE and must never be routed to an introspection endpoint.
    assert detect(f"{header}.e30.c2ln") is not TokenFormat.OPAQUE


_JWS_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@given(
    st.text(alphabet="eyJAz09_-.+/= \t\u00e9", max_size=40).map(lambda s: "eyJ" + s)
    | st.from_regex(
        r"ey[A-Za-z0-9_-]{0,8}\.[A-Za-z0-9_=.-]{0,8}\.[A-Za-z0-9_.+-]{0,8}", fullmatch=True
    )
)
def test_jws_shape_check_matches_the_pattern(token: str) -> None:
    """The JWS shape check (no regular expression) accepts exactly what the pattern does."""
    if token.count(".") != 2 or not token.isascii():
        return
    expected = TokenFormat.JWS if _JWS_SHAPE.fullmatch(token) else TokenFormat.MALFORMED
    assert detect(token) is expected


@pytest.mark.parametrize("second", list("wxyz0123456789-_"))
def test_open_brace_prefixes(second: str) -> None:
    import base64

    decoded = base64.urlsafe_b64decode(("e" + second + "AA").encode())
    assert decoded[:1] == b"{"
