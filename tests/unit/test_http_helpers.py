"""bearer.py, urls.py and exchange.py: header parsing, URL rules, response reading."""

from __future__ import annotations

import pytest

from tokenguard.bearer import bearer_token, parse_authorization
from tokenguard.core.exchange import Fetch, HttpFailure, HttpRequest, HttpResponse, ResponseReader
from tokenguard.core.urls import endpoint_problem, is_loopback_host, well_known_urls
from tokenguard.errors import InvalidRequest, MissingToken

# -- bearer_token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc  ", "abc"),
        ("  Bearer abc", "abc"),
        ("Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"),
        ("Bearer a+/b==", "a+/b=="),
    ],
)
def test_bearer_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header", [None, "", "Basic dXNlcjpwYXNz", "Token abc", "Bearerabc", "DPoP abc", "   "]
)
def test_bearer_missing(header: str | None) -> None:
    with pytest.raises(MissingToken) as info:
        bearer_token(header)
    assert info.value.www_authenticate() == "Bearer"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a\tb", "Bearer a\nb"]
)
def test_bearer_invalid_request(header: str) -> None:
    with pytest.raises(InvalidRequest, match="exactly one bearer token") as info:
        bearer_token(header)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # Two credentials in one value (two headers joined by the server): never the first.
        ("Basic dTpw, Bearer abc", "more than one credential"),
        ("Bearer abc, Basic dTpw", "more than one credential"),
        ("Bearer abc, DPoP abc", "more than one credential"),
        ("DPoP abc,Bearer abc", "more than one credential"),
        ('Digest realm="x, y", Bearer abc', "more than one credential"),
        # RFC 9110 §11.4: the scheme is a token followed by spaces (not a tab, not ":").
        ("Bearer\tabc", "malformed"),
        ("Bearer: abc", "malformed"),
        (",,,", "malformed"),
        (", Bearer abc", "malformed"),
        ("Bearer\x00abc", "malformed"),
        # Only SP and HTAB are the field's whitespace: a no-break space is not trimmed.
        ("Bearer abc\xa0", "exactly one bearer token"),
        ("Bearer \xa0abc", "exactly one bearer token"),
        ("Bearer abc\x0b", "exactly one bearer token"),
        ("Bearer ab\u00e9", "exactly one bearer token"),
        ("DPoP a b", "exactly one bearer token"),
    ],
)
def test_malformed_authorization_is_invalid_request(header: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        bearer_token(header)
    assert info.value.status_code == 400
    assert 'error="invalid_request"' in info.value.www_authenticate()


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("DPoP abc", ("DPoP", "abc")),
        ("dpop  abc", ("DPoP", "abc")),
        ("bEaReR abc==", ("Bearer", "abc==")),
        ("Basic dTpw", ("basic", "dTpw")),
        (
            'Digest username="a, b", realm="r", nc=00000001',
            ("digest", 'username="a, b", realm="r", nc=00000001'),
        ),
        (
            "AWS4-HMAC-SHA256 Credential=A/b, SignedHeaders=host;x, Signature=f",
            ("aws4-hmac-sha256", "Credential=A/b, SignedHeaders=host;x, Signature=f"),
        ),
        ("Negotiate", ("negotiate", "")),
        ("", None),
        (" \t ", None),
        (None, None),
    ],
)
def test_parse_authorization(header: str | None, parsed: tuple[str, str] | None) -> None:
    assert parse_authorization(header) == parsed


# -- urls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.255.0.9", "::1", "[::1]"],
)
def test_loopback(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost.example.com",
        "mylocalhost",
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "[2001:db8::1]",
        "128.0.0.1",
        "",
        "not an ip",
    ],
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("issuer", "oauth", "oidc"),
    [
        (
            "https://as.example",
            "https://as.example/.well-known/oauth-authorization-server",
            "https://as.example/.well-known/openid-configuration",
        ),
        (
            "https://as.example/",
            "https://as.example/.well-known/oauth-authorization-server",
            "https://as.example/.well-known/openid-configuration",
        ),
        (
            "https://as.example/tenant/1",
            "https://as.example/.well-known/oauth-authorization-server/tenant/1",
            "https://as.example/tenant/1/.well-known/openid-configuration",
        ),
        (
            "https://as.example:8443/realms/x/",
            "https://as.example:8443/.well-known/oauth-authorization-server/realms/x",
            "https://as.example:8443/realms/x/.well-known/openid-configuration",
        ),
    ],
)
def test_well_known_urls(issuer: str, oauth: str, oidc: str) -> None:
    assert well_known_urls(issuer) == (oauth, oidc)


@pytest.mark.parametrize(
    ("url", "insecure", "is_issuer", "problem"),
    [
        ("https://as.example/x?q=1", False, False, None),
        ("https://as.example/x?q=1", False, True, "must not contain a query"),
        ("http://127.0.0.1/x", True, False, None),
        (
            "http://127.0.0.1/x",
            False,
            False,
            "must use https (set allow_insecure_http=True only for a loopback test server)",
        ),
        ("http://as.example/x", True, False, "may use http only on a loopback host"),
        ("wss://as.example/", True, False, "must use https"),
        ("https://a@as.example/", False, False, "must not contain credentials"),
        ("https://:pw@as.example/", False, False, "must not contain credentials"),
        ("//as.example/x", False, False, "must use https"),
        ("https://[::1/x", False, False, "is not a valid absolute URL"),
        ("https://as.example:abc/", False, False, "is not a valid absolute URL"),
        ("https://as.example\t/", False, False, "is not a valid URL"),
    ],
)
def test_endpoint_problem(url: str, insecure: bool, is_issuer: bool, problem: str | None) -> None:
    assert endpoint_problem(url, allow_insecure_http=insecure, is_issuer=is_issuer) == problem


def test_endpoint_problem_non_string() -> None:
    problem = endpoint_problem(None, allow_insecure_http=False)  # type: ignore[arg-type]
    assert problem == "is not a valid URL"


# -- exchange ----------------------------------------------------------------------------


def reader(headers: dict[str, str], max_bytes: int = 100, deadline: float = 10.0) -> ResponseReader:
    request = HttpRequest("GET", "https://as.example/jwks", max_bytes=max_bytes)
    return ResponseReader(request, 200, headers, deadline)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Encoding": "identity"},
        {"content-encoding": " Identity "},
        {"Content-Encoding": ""},
        {"Content-Length": "100"},
        {"content-length": " 0 "},
    ],
)
def test_head_ok(headers: dict[str, str]) -> None:
    assert reader(headers).check_head() is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Encoding": "br"}, "unsupported content encoding"),
        ({"Content-Encoding": "zstd"}, "unsupported content encoding"),
        ({"Content-Encoding": "gzip, identity"}, "unsupported content encoding"),
        ({"Content-Length": "101"}, "response too large"),
        ({"Content-Length": "99999999999999999999"}, "response too large"),
        ({"Content-Length": "abc"}, "response too large"),
        ({"Content-Length": "-1"}, "response too large"),
        ({"Content-Length": "1e3"}, "response too large"),
        ({"Content-Length": "10, 10"}, "response too large"),
        ({"Content-Length": ""}, "response too large"),
    ],
)
def test_head_refused(headers: dict[str, str], reason: str) -> None:
    assert reader(headers).check_head() == HttpFailure(reason)


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip", "deflate"])
def test_compressed_answers_are_decoded_with_bounded_output(encoding: str) -> None:
    import gzip
    import zlib

    def pack(data: bytes) -> bytes:
        return gzip.compress(data) if "gzip" in encoding.lower() else zlib.compress(data)

    r = reader({"Content-Encoding": encoding}, max_bytes=100)
    assert r.check_head() is None
    body = pack(b'{"keys": []}')
    assert r.feed(body[:5], 1.0) is None
    assert r.feed(body[5:], 1.0) is None
    response = r.response()
    assert response.body == b'{"keys": []}'
    assert "content-encoding" not in response.headers
    # A bomb: 10 MB of zeros in ~10 KB never expands past the cap.
    bomb = reader({"Content-Encoding": encoding}, max_bytes=100)
    assert bomb.check_head() is None
    assert bomb.feed(pack(b"0" * 10_000_000), 1.0) == HttpFailure("response too large")
    broken = reader({"Content-Encoding": encoding}, max_bytes=100)
    assert broken.check_head() is None
    assert broken.feed(b"not compressed at all", 1.0) == HttpFailure("bad compressed body")


def test_feed_size_cap() -> None:
    r = reader({}, max_bytes=10)
    assert r.feed(b"12345", 1.0) is None
    assert r.feed(b"67890", 2.0) is None  # exactly at the cap
    assert r.feed(b"x", 3.0) == HttpFailure("response too large")


def test_feed_deadline() -> None:
    r = reader({}, deadline=5.0)
    assert r.feed(b"a", 5.0) is None
    assert r.feed(b"b", 5.001) == HttpFailure("response too slow")


def test_response_assembled_with_lowercase_headers() -> None:
    r = reader({"Content-Type": "Application/JSON; charset=utf-8", "Cache-Control": "max-age=5"})
    r.feed(b'{"a":', 1.0)
    r.feed(b"1}", 1.0)
    response = r.response()
    assert response == HttpResponse(
        200,
        {"content-type": "Application/JSON; charset=utf-8", "cache-control": "max-age=5"},
        b'{"a":1}',
    )
    assert response.header("cache-control") == "max-age=5"
    assert response.header("Cache-Control") is None  # names are stored lower-cased
    assert response.media_type == "application/json"
    assert 'a":1' not in repr(response)


def test_media_type_missing() -> None:
    assert HttpResponse(200, {}, b"").media_type == ""


def test_request_and_fetch_reprs_hide_credentials() -> None:
    request = HttpRequest(
        "POST",
        "https://as.example/introspect",
        max_bytes=10,
        headers={"Authorization": "Basic c2VjcmV0"},
        form={"token": "tkn-secret"},
    )
    assert "c2VjcmV0" not in repr(request)
    assert "tkn-secret" not in repr(request)
    fetch = Fetch(key=("jwks", "x"), build=lambda: request, complete=lambda _o: None)
    assert repr(fetch) == "Fetch(key=('jwks', 'x'), budget=None)"
    assert fetch.build() is request


def test_truncated_or_corrupt_compressed_body_is_a_failure() -> None:
    import gzip

    packed = gzip.compress(b'{"keys": []}')
    truncated = reader({"Content-Encoding": "gzip"}, max_bytes=100)
    assert truncated.check_head() is None
    assert truncated.feed(packed[:-8], 1.0) is None  # no checksum trailer
    assert truncated.response() == HttpFailure("bad compressed body")
    trailing = reader({"Content-Encoding": "gzip"}, max_bytes=100)
    assert trailing.check_head() is None
    assert trailing.feed(packed + b"junk", 1.0) is None
    assert trailing.response() == HttpFailure("bad compressed body")
