"""Route matching, path normalisation, configuration checks and identity values: pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenguard import ConfigurationError
from tokenguard.gateway import load_gateway_config
from tokenguard.gateway.identity import sanitize
from tokenguard.gateway.routes import UnsafePath, compile_glob, normalize_path

BASE = """\
[[issuers]]
issuer = "https://as.example.com"

[[policies]]
name = "orders"
audience = "urn:orders"
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("/a/b?x=/../y#f", "/a/b"),
        ("/a//b/", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/a/%62", "/a/b"),
        ("/a/%2E%2e/b", "/b"),
        ("/a;jsessionid=1/b;v=2", "/a/b"),
        ("/a/..;/b", "/b"),
        ("/caf%C3%A9", "/café"),
        ("/a/b/..", "/a/"),
        ("https://h.example/a/../b?q", "/b"),
        ("http://h.example", "/"),
    ],
)
def test_normalize_path(target: str, expected: str) -> None:
    assert normalize_path(target) == expected


@pytest.mark.parametrize(
    "target",
    [
        "a/b",
        "",
        "/a\\b",
        "/a b",
        "/a\x00",
        "/a/%2fb",
        "/a/%5Cb",
        "/a/%00",
        "/a/%0d%0a",
        "/..",
        "/a/../..",
        "/%ff",
        "/a//../b",
        "/\u0100",
    ],
)
def test_unsafe_paths(target: str) -> None:
    with pytest.raises(UnsafePath):
        normalize_path(target)


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/orders/*", "/orders/1", True),
        ("/orders/*", "/orders/", True),
        ("/orders/*", "/orders/1/items", False),
        ("/orders/**", "/orders", True),
        ("/orders/**", "/orders/1/items", True),
        ("/orders/**", "/ordersx", False),
        ("/a/**/c", "/a/c", True),
        ("/a/**/c", "/a/b/b/c", True),
        ("/v?/x", "/v1/x", True),
        ("/v?/x", "/v10/x", False),
        ("/a.b", "/aXb", False),
        ("/**", "/anything/at/all", True),
    ],
)
def test_path_globs(glob: str, path: str, matches: bool) -> None:
    assert (compile_glob(glob, separator="/").fullmatch(path) is not None) is matches


def test_host_globs() -> None:
    pattern = compile_glob("*.example.com", separator=".")
    assert pattern.fullmatch("api.example.com")
    assert not pattern.fullmatch("a.b.example.com")
    assert not pattern.fullmatch("example.com")


def test_first_match_wins_and_hosts_are_normalised(tmp_path: Path) -> None:
    config = load_gateway_config(
        _write(
            tmp_path,
            BASE
            + """
[[routes]]
path = "/a/**"
host = "API.example.com"
policy = "orders"
scopes = ["x"]

[[routes]]
path = "/a/**"
public = true
""",
        )
    )
    table = config.route_table()
    first = table.match("GET", "api.EXAMPLE.com.:8443", "/a/1")
    assert first is not None
    assert first.index == 0
    assert first.scopes == ("x",)
    second = table.match("GET", None, "/a/1")
    assert second is not None
    assert second.public
    assert table.match("GET", "[::1]:80", "/b") is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("routes", "line", "reason"),
    [
        ('[[routes]]\npath = "orders"\npolicy = "orders"\n', 9, "routes[0].path: path must start"),
        ('[[routes]]\npath = "/a"\npolicy = "nope"\n', 10, "routes[0].policy: no policy"),
        ('[[routes]]\npath = "/a"\n', 8, "a route needs a policy, or public = true"),
        ('[[routes]]\npath = "/a"\npublic = true\npolicy = "orders"\n', 8, "takes no policy"),
        ('[[routes]]\npath = "/a"\nmethods = ["get"]\npolicy = "orders"\n', 10, "upper-case"),
        ('[[routes]]\npath = "/a/b**"\npolicy = "orders"\n', 9, "whole path segment"),
        ('[[routes]]\npath = "/a"\npolicy = "orders"\nscopes = ["a b"]\n', 11, "scope-token"),
        ('[[routes]]\npath = "/a"\nhost = "a:80"\npolicy = "orders"\n', 10, "host must be"),
        ('[[routes]]\npath = "/a"\npolicy = "orders"\nfoo = 1\n', 11, "routes[0].foo"),
        (
            '[[routes]]\npath = "/a"\npublic = true\n'
            '[gateway.identity_headers]\nsubject = "Host"\n',
            12,
            "reserved",
        ),
        (
            '[[routes]]\npath = "/a"\npublic = true\n[gateway]\nidentity_headers = '
            '{ subject = "X-A", issuer = "x-a" }\n',
            12,
            "unique",
        ),
        ("", None, "routes: Field required"),
    ],
)
def test_invalid_configuration_is_refused_with_line_and_reason(
    tmp_path: Path, routes: str, line: int | None, reason: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_gateway_config(_write(tmp_path, BASE + "\n" + routes))
    message = caught.value.description
    assert reason in message
    if line is not None:
        assert f"line {line}: " in message


def test_unchecked_sender_constrained_policies_are_refused(
    tmp_path: Path,
) -> None:
    text = BASE + 'allow_sender_constrained = true\n[[routes]]\npath = "/"\npolicy = "orders"\n'
    with (
        pytest.warns(DeprecationWarning, match="allow_sender_constrained"),
        pytest.raises(
            ConfigurationError, match=r"line 10: routes\[0\]\.policy: .*without its proof"
        ),
    ):
        load_gateway_config(_write(tmp_path, text))


def test_guard_errors_point_at_their_line(tmp_path: Path) -> None:
    text = BASE.replace('audience = "urn:orders"', 'audience = "urn:orders"\nmode = "fast"')
    with pytest.raises(ConfigurationError, match=r"line 7: policies\[0\]\.mode"):
        load_gateway_config(_write(tmp_path, text + '[[routes]]\npath = "/"\npublic = true\n'))


def test_unreadable_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_gateway_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="line 1"):
        load_gateway_config(_write(tmp_path, "[[routes]\n"))
    # A mapping works too (no lines to report).
    config = load_gateway_config(
        {
            "issuers": [{"issuer": "https://as.example.com"}],
            "policies": [{"name": "p", "audience": "a"}],
            "routes": [{"path": "/**", "policy": "p"}],
        }
    )
    assert config.routes[0].policy == "p"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice", "alice"),
        ("a b", "a%20b"),
        ("100%", "100%25"),
        ("x\r\nSet-Cookie: a", "x%0D%0ASet-Cookie:%20a"),
        ("ü", "%C3%BC"),
        ("\x00\x7f", "%00%7F"),
    ],
)
def test_sanitize(value: str, expected: str) -> None:
    assert sanitize(value) == expected


_PUBLIC = '[[routes]]\npath = "/"\npublic = true\n'


def test_event_receivers_are_configured_and_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenguard.events import SetReceiver
    from tokenguard.gateway import create_app

    monkeypatch.setenv("TG_SET_AUTH", "Bearer stream-secret")
    text = (
        BASE
        + _PUBLIC
        + '[[gateway.events]]\nissuer = "https://as.example.com"\naudience = "urn:gw"\n'
        + 'authorization_env = "TG_SET_AUTH"\n'
    )
    config = load_gateway_config(_write(tmp_path, text))
    (receiver,) = config.gateway.events
    assert receiver.path == "/events"
    assert receiver.authorization is not None
    assert "stream-secret" not in repr(config)
    assert "stream-secret" not in config.model_dump_json()
    app = create_app(config)
    mounted = app._mounted("/events")
    assert mounted is not None
    assert isinstance(mounted[1], SetReceiver)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ('issuer = "https://other.example"\naudience = "a"\n', "not a configured issuer"),
        ('issuer = "https://as.example.com"\naudience = "a"\npath = "/metrics"\n', "taken"),
        ('issuer = "https://as.example.com"\naudience = "a"\npath = "/envoy/x"\n', "taken"),
        ('issuer = "https://as.example.com"\naudience = "a"\npath = "/a/../b"\n', "plain"),
        (
            'issuer = "https://as.example.com"\naudience = "a"\nauthorization_env = "TG_NO"\n',
            "not set",
        ),
        ('issuer = "https://as.example.com"\n', "audience"),
    ],
)
def test_invalid_event_receivers_are_refused(tmp_path: Path, events: str, reason: str) -> None:
    text = BASE + _PUBLIC + "[[gateway.events]]\n" + events
    with pytest.raises(ConfigurationError, match=reason):
        load_gateway_config(_write(tmp_path, text))


def test_receivers_with_several_workers_need_a_fleet(tmp_path: Path) -> None:
    from tokenguard.gateway.server import serve

    text = (
        BASE
        + _PUBLIC
        + '[[gateway.events]]\nissuer = "https://as.example.com"\naudience = "urn:gw"\n'
    )
    with pytest.raises(ConfigurationError, match="needs a \\[fleet\\]"):
        serve(_write(tmp_path, text), port=0, workers=2, announce=lambda _: None)
