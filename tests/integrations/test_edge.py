"""tokenguard.edge: the RFC 6750 reading rules, replies and RFC 9728 metadata, with no
framework at all."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from tokenguard import (
    ConfigurationError,
    InsufficientScope,
    InvalidRequest,
    MissingToken,
    Policy,
    TokenGuard,
    TokenInfo,
    ValidationUnavailable,
    load_config,
)
from tokenguard.edge import Protection, Reply, RequestView, metadata_location, route_requirements
from tokenguard.testing import AuthServer, guard_for

TOKEN = "abc.def-ghi_jkl~mno+pq/r=="
ALGS = "ES256 ES384 ES512 EdDSA Ed25519 PS256 PS384 PS512 RS256 RS384 RS512"


def view(
    *authorization: str, query: str = "", method: str = "GET", content_type: str | None = None
) -> RequestView:
    headers = {"authorization": authorization}
    if content_type is not None:
        headers["content-type"] = (content_type,)

    def lookup(name: str) -> Sequence[str]:
        return headers.get(name, ())

    return RequestView(method=method, headers=lookup, query=query)


@pytest.fixture(scope="module")
def guard() -> Iterator[TokenGuard]:
    with TokenGuard(
        issuers=[{"issuer": "https://as.example.com"}, {"issuer": "https://as2.example.com"}],
        policies=[
            Policy(name="orders", audience="urn:o", required_scopes=["o:read"]),
            Policy(name="other", audience="urn:x", issuers=["https://as2.example.com"]),
        ],
    ) as guard:
        yield guard


@pytest.fixture
def protection(guard: TokenGuard) -> Protection:
    return Protection(guard, "orders", realm="api", resource="https://api.example.com/v1/")


def test_token_from_one_bearer_header(protection: Protection) -> None:
    assert protection.token(view(f"Bearer {TOKEN}")) == TOKEN
    assert protection.token(view(f"bearer   {TOKEN} ")) == TOKEN


@pytest.mark.parametrize(
    ("request_view", "error"),
    [
        (view(), MissingToken),
        (view(""), MissingToken),
        (view("Basic dTpw"), MissingToken),
        (view(f"Bearer {TOKEN}", f"Bearer {TOKEN}"), InvalidRequest),
        (view("Bearer"), InvalidRequest),
        (view("Bearer a b"), InvalidRequest),
        (view("Bearer a,b"), InvalidRequest),
        (view(query=f"access_token={TOKEN}"), InvalidRequest),
        (view(f"Bearer {TOKEN}", query=f"x=1&access_token={TOKEN}"), InvalidRequest),
        (view(query="access%5Ftoken=x"), InvalidRequest),
        (view(query="&".join(["a=%20"] * 1001)), InvalidRequest),
    ],
)
def test_reading_rules(
    protection: Protection, request_view: RequestView, error: type[Exception]
) -> None:
    with pytest.raises(error):
        protection.token(request_view)


def test_query_without_a_token_is_fine(protection: Protection) -> None:
    assert protection.token(view(f"Bearer {TOKEN}", query="page=2&q=%20")) == TOKEN


def test_form_token_rules(guard: TokenGuard) -> None:
    closed = Protection(guard, "orders")
    open_ = Protection(guard, "orders", allow_form_token=True)
    form = "application/x-www-form-urlencoded; charset=utf-8"
    post = view(method="POST", content_type=form)
    assert not closed.wants_form(post)
    assert open_.wants_form(post)
    assert not open_.wants_form(view(method="GET", content_type=form))
    assert not open_.wants_form(view(method="POST", content_type="multipart/form-data"))
    assert not open_.wants_form(view(method="POST"))
    assert open_.token(post.with_form([TOKEN])) == TOKEN
    for tokens in ([TOKEN, TOKEN], ["a b"], [""]):
        with pytest.raises(InvalidRequest):
            open_.token(post.with_form(tokens))
    with pytest.raises(InvalidRequest):
        open_.token(view(f"Bearer {TOKEN}", method="POST").with_form([TOKEN]))
    # Another scheme in the header and the token in the body: the body's is the bearer one.
    assert open_.token(view("Basic dTpw", method="POST").with_form([TOKEN])) == TOKEN


def test_replies(protection: Protection) -> None:
    metadata = "https://api.example.com/.well-known/oauth-protected-resource/v1"
    missing = protection.reply(MissingToken())
    assert missing.status == 401
    # The policy accepts DPoP too (the default): the bare challenge offers both schemes.
    assert missing.header_map["WWW-Authenticate"] == (
        f'Bearer realm="api", resource_metadata="{metadata}", '
        f'DPoP realm="api", algs="{ALGS}", resource_metadata="{metadata}"'
    )
    assert json.loads(missing.body) == {"error_description": "An access token is required"}
    scope = protection.reply(InsufficientScope(["o:read"]))
    assert scope.status == 403
    assert 'scope="o:read"' in scope.header_map["WWW-Authenticate"]
    unavailable = protection.reply(ValidationUnavailable())
    assert unavailable.status == 503
    assert unavailable.header_map["Retry-After"] == "5"
    assert unavailable.content["error"] == "temporarily_unavailable"
    broken = protection.reply(ConfigurationError("policy 'secret-name' is broken"))
    assert broken.status == 500
    assert b"secret-name" not in broken.body
    assert "Retry-After" not in broken.header_map


def test_authorize_names_every_scope(guard: TokenGuard, protection: Protection) -> None:
    info = TokenInfo(scopes=frozenset({"o:read"}))
    assert protection.authorize(info) is info
    route = protection.derive(scopes=["o:write"])
    with pytest.raises(InsufficientScope) as caught:
        route.authorize(info)
    assert caught.value.scopes == ("o:read", "o:write")
    with pytest.raises(InsufficientScope) as caught:
        protection.authorize(info, ["extra"])
    assert caught.value.scopes == ("extra", "o:read")
    assert "o:write" in repr(route)


def test_metadata_document(guard: TokenGuard) -> None:
    protection = Protection(
        guard,
        "orders",
        scopes=["o:write"],
        resource="https://api.example.com",
        metadata={"resource_name": "Orders"},
        allow_form_token=True,
    )
    assert protection.metadata_path == "/.well-known/oauth-protected-resource"
    assert protection.metadata() == {
        "resource": "https://api.example.com",
        "authorization_servers": ["https://as.example.com", "https://as2.example.com"],
        "scopes_supported": ["o:read", "o:write"],
        "bearer_methods_supported": ["header", "body"],
        "resource_name": "Orders",
    }
    reply = protection.metadata_reply()
    assert reply.status == 200
    assert reply.header_map["Content-Type"] == "application/json"
    other = Protection(guard, "other", resource="https://x.example.com/api")
    assert other.metadata()["authorization_servers"] == ["https://as2.example.com"]
    with pytest.raises(ConfigurationError):
        Protection(guard, "other").metadata()


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ("https://api.example.com", "/.well-known/oauth-protected-resource"),
        ("https://api.example.com/", "/.well-known/oauth-protected-resource"),
        ("https://api.example.com/a/b", "/.well-known/oauth-protected-resource/a/b"),
        ("http://127.0.0.1:8000/mcp", "/.well-known/oauth-protected-resource/mcp"),
        ("http://localhost", "/.well-known/oauth-protected-resource"),
    ],
)
def test_metadata_location(resource: str, path: str) -> None:
    assert metadata_location(resource)[0] == path


@pytest.mark.parametrize(
    "resource",
    [
        "http://api.example.com",
        "ftp://x",
        "https://x?q=1",
        "https://x#f",
        "/relative",
        "https://[x",
    ],
)
def test_bad_resources(resource: str) -> None:
    with pytest.raises(ConfigurationError):
        metadata_location(resource)


def test_configuration_errors(guard: TokenGuard) -> None:
    with pytest.raises(ConfigurationError, match="several policies"):
        Protection(guard)
    with pytest.raises(ConfigurationError):
        Protection(guard, "nope")
    with pytest.raises(ConfigurationError):
        Protection(guard, Policy(name="orders", audience="different"))
    assert Protection(guard, guard.config.policies[0]).policy_name == "orders"
    for bad in (
        {"scopes": ["a b"]},
        {"acr_values": []},
        {"max_age": -1},
        {"retry_after": -1},
        {"metadata": {"resource_name": "x"}},
    ):
        with pytest.raises(ConfigurationError):
            Protection(guard, "orders", **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Protection(guard, "orders", resource="https://a.example", metadata={"resource": "b"})
    with pytest.raises(ConfigurationError):
        Protection(guard, "orders", resource="https://a.example", metadata={"x": object()})
    assert route_requirements("one") == (("one",), None, None)


def test_validate_sync_and_async(auth_server: AuthServer) -> None:
    import asyncio

    with guard_for(auth_server) as guard:
        protection = Protection(guard, scopes=["s"], acr_values=["mfa"])
        good = auth_server.issue_jwt(scopes=["s"], claims={"acr": "mfa"})
        assert protection.validate(view(f"Bearer {good}")).acr == "mfa"
        info = asyncio.run(protection.avalidate(view(f"Bearer {good}")))
        assert info.scopes == {"s"}
        asyncio.run(guard.aclose())


def test_readme_framework_snippet_runs(auth_server: AuthServer) -> None:
    # The README's FastAPI snippet, as written, with a guard for the embedded server.
    import re
    from pathlib import Path

    from fastapi.testclient import TestClient

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## In your framework") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    with guard_for(auth_server, name="orders") as guard:
        namespace: dict[str, object] = {"guard": guard}
        exec(code.group(1), namespace)  # noqa: S102 - our own README
        client = TestClient(namespace["app"])  # type: ignore[arg-type]
        token = auth_server.issue_jwt(scopes=["orders:read"], subject="ann")
        ok = client.get("/orders", headers={"Authorization": f"Bearer {token}"})
        assert ok.json() == {"subject": "ann"}
        assert client.get("/orders").status_code == 401


def test_reply_carries_the_errors_other_headers(protection: Protection) -> None:
    from tokenguard import UseDPoPNonce

    reply = protection.reply(UseDPoPNonce("n-1"))
    assert reply.header_map["DPoP-Nonce"] == "n-1"
    challenge = reply.header_map["WWW-Authenticate"]
    assert 'error="use_dpop_nonce"' in challenge
    assert challenge.count("resource_metadata=") == challenge.count("realm=")
    assert [name for name, _ in reply.headers].count("WWW-Authenticate") == 1


def test_retry_after_once_and_the_guards_own_value_first(protection: Protection) -> None:
    def retry_after(reply: Reply) -> list[str]:
        return [value for name, value in reply.headers if name.lower() == "retry-after"]

    # The guard knows when asking again may succeed: that value, once.
    assert retry_after(protection.reply(ValidationUnavailable(retry_after=1))) == ["1"]
    # It does not: the configured default, once.
    assert retry_after(protection.reply(ValidationUnavailable())) == ["5"]
    assert retry_after(protection.reply(InvalidRequest())) == []


def test_credentials_give_the_scheme(protection: Protection) -> None:
    assert protection.credentials(view(f"DPoP {TOKEN}")) == ("DPoP", TOKEN)
    assert protection.credentials(view(f"bearer {TOKEN}")) == ("Bearer", TOKEN)
    with pytest.raises(MissingToken):
        protection.token(view(f"DPoP {TOKEN}"))  # the bearer reader: not a bearer token
    for both in (f"Bearer {TOKEN}, DPoP {TOKEN}", f"Basic dTpw, Bearer {TOKEN}"):
        with pytest.raises(InvalidRequest, match="more than one credential"):
            protection.credentials(view(both))
    # A form token beside a DPoP credential is the token twice.
    post = view(f"DPoP {TOKEN}", method="POST").with_form([TOKEN])
    with pytest.raises(InvalidRequest, match="more than once"):
        protection.credentials(post)
    # The form value is the token itself: no scheme, no surrounding whitespace.
    for value in (f" {TOKEN}", f"{TOKEN} ", f"Bearer {TOKEN}"):
        with pytest.raises(InvalidRequest):
            protection.credentials(view(method="POST").with_form([value]))


@pytest.mark.parametrize(
    ("dpop", "expected"),
    [
        ("required", f'DPoP algs="{ALGS}"'),
        ("disabled", "Bearer"),
        ("allowed", f'Bearer, DPoP algs="{ALGS}"'),
    ],
)
def test_errors_raised_before_the_guard_challenge_as_the_policy_says(
    dpop: str, expected: str
) -> None:
    # No token, or a malformed header, never reaches the guard: the challenge still
    # offers what the policy accepts (RFC 9449 §7.1), not Bearer alone.
    with TokenGuard(
        issuers=[{"issuer": "https://as.example.com"}],
        policies=[Policy(name="p", audience="urn:p", dpop=dpop)],
    ) as guard:
        protection = Protection(guard)
        assert protection.reply(MissingToken()).header_map["WWW-Authenticate"] == expected
        malformed = protection.reply(InvalidRequest()).header_map["WWW-Authenticate"]
        assert malformed.startswith(expected.split(" ", maxsplit=1)[0].rstrip(","))
        assert 'error="invalid_request"' in malformed


@pytest.mark.parametrize("scope", ['orders:"read"', "caf\u00e9", "a\\b", "tab\there"])
def test_scopes_a_challenge_cannot_carry_are_refused_at_start_up(
    guard: TokenGuard, scope: str
) -> None:
    # The challenge's scope parameter (RFC 6750 §3) lists scope-tokens as they are;
    # one that would have to be altered there is a configuration error, not a surprise.
    with pytest.raises(ConfigurationError, match="RFC 6749"):
        Protection(guard, "orders", scopes=[scope])
    with pytest.raises(ConfigurationError, match="RFC 6749"):
        load_config(
            {
                "issuers": [{"issuer": "https://as.example.com"}],
                "policies": [{"name": "p", "audience": "urn:p", "required_scopes": [scope]}],
            }
        )


@pytest.mark.parametrize("realm", ['my "api"', "caf\u00e9", "a\\b", "line\nbreak"])
def test_realms_a_challenge_cannot_carry_are_refused(guard: TokenGuard, realm: str) -> None:
    with pytest.raises(ConfigurationError, match="realm"):
        Protection(guard, "orders", realm=realm)
