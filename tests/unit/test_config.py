"""config.py: Issuer / Policy / Settings / GuardConfig rules and load_config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from tokenguard.client_auth import BearerToken, ClientSecretBasic, ClientSecretPost, PrivateKeyJWT
from tokenguard.config import GuardConfig, Issuer, Policy, Settings, build_config, load_config
from tokenguard.core.algorithms import DEFAULT_ALGORITHMS
from tokenguard.errors import ConfigurationError

AS = "https://as.example"
SECRET = "s3cr3t-Value-never-shown"


def basic() -> ClientSecretBasic:
    return ClientSecretBasic("rs", SECRET)


# -- Issuer -------------------------------------------------------------------------------


def test_issuer_positional_and_keyword() -> None:
    assert Issuer(AS).issuer == AS
    assert Issuer(issuer=AS) == Issuer(AS)
    issuer = Issuer(AS, jwks_uri=f"{AS}/jwks", client_auth=basic())
    assert issuer.jwks_uri == f"{AS}/jwks"
    assert isinstance(issuer.client_auth, ClientSecretBasic)
    assert repr(issuer) == "Issuer('https://as.example')"


def test_issuer_is_frozen_and_strict() -> None:
    issuer = Issuer(AS)
    with pytest.raises(pydantic.ValidationError):
        issuer.issuer = "https://evil.example"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        Issuer(AS, jwks="https://as.example/jwks")
    with pytest.raises(pydantic.ValidationError):
        Issuer()


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example",
        "https://as.example/",
        "https://as.example/tenant/1",
        "https://as.example:8443/realms/x",
        "HTTPS://AS.example",
        "https://[2001:db8::1]/",
    ],
)
def test_issuer_accepted(url: str) -> None:
    assert Issuer(url).issuer == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://as.example", "issuer must use https"),
        ("ftp://as.example", "issuer must use https"),
        ("as.example", "issuer is not a valid absolute URL"),
        ("https://", "issuer is not a valid absolute URL"),
        ("https://as.example:99999/", "issuer is not a valid absolute URL"),
        ("", "issuer is not a valid URL"),
        ("https://as.example/ x", "issuer is not a valid URL"),
        ("https://as.example/\n", "issuer is not a valid URL"),
        ("https://" + "a" * 2050, "issuer is not a valid URL"),
        ("https://user:pw@as.example", "issuer must not contain credentials"),
        ("https://user@as.example", "issuer must not contain credentials"),
        ("https://as.example/#frag", "issuer must not contain a fragment"),
        ("https://as.example/#", "issuer must not contain a fragment"),
        ("https://as.example/?tenant=1", "issuer must not contain a query"),
        ("https://as.example/?", "issuer must not contain a query"),
    ],
)
def test_issuer_refused(url: str, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Issuer(url)


def test_issuer_url_type() -> None:
    with pytest.raises(pydantic.ValidationError):
        Issuer(123)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "api.localhost"])
def test_insecure_http_only_on_loopback(host: str) -> None:
    url = f"http://{host}:8080/realm"
    assert Issuer(url, allow_insecure_http=True).issuer == url
    with pytest.raises(pydantic.ValidationError, match="must use https"):
        Issuer(url)


@pytest.mark.parametrize("host", ["as.example", "10.0.0.1", "[2001:db8::1]", "localhost.evil.com"])
def test_insecure_http_refused_elsewhere(host: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="may use http only on a loopback host"):
        Issuer(f"http://{host}/", allow_insecure_http=True)


@pytest.mark.parametrize("field", ["jwks_uri", "introspection_endpoint", "metadata_url"])
def test_endpoint_urls_checked(field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=f"{field} must use https"):
        Issuer(AS, **{field: "http://as.example/x"})
    with pytest.raises(pydantic.ValidationError, match=f"{field} must not contain a fragment"):
        Issuer(AS, **{field: "https://as.example/x#y"})
    # Endpoints (unlike the issuer identifier) may have a query.
    assert getattr(Issuer(AS, **{field: "https://as.example/x?y=1"}), field) == (
        "https://as.example/x?y=1"
    )
    local = Issuer(
        "http://127.0.0.1:9000", allow_insecure_http=True, **{field: "http://localhost/x"}
    )
    assert getattr(local, field) == "http://localhost/x"


# -- Policy -------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = Policy(name="api", audience="https://api.example")
    assert policy.mode == "hybrid"
    assert policy.algorithms == DEFAULT_ALGORITHMS
    assert "HS256" not in policy.algorithms
    assert policy.leeway == 60
    assert policy.accept_plain_jwt is False
    assert policy.allow_sender_constrained is False
    assert policy.high_assurance_cache_ttl == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithms": ("none",)}, "unsupported algorithms \\['none'\\]"),
        ({"algorithms": ("RS256", "XX1")}, "unsupported algorithms \\['XX1'\\]"),
        ({"algorithms": ("rs256",)}, "unsupported algorithms"),
        ({"algorithms": ()}, "at least one algorithm"),
        ({"leeway": -1}, "greater than or equal to 0"),
        ({"leeway": 300.5}, "less than or equal to 300"),
        ({"required_scopes": ("read write",)}, "without spaces"),
        ({"required_scopes": ("",)}, "non-empty"),
        ({"required_scopes": ("a\tb",)}, "without spaces"),
        ({"mode": "local"}, "Input should be 'jwt', 'introspect', 'hybrid' or 'high_assurance'"),
        ({"name": ""}, "at least 1 character"),
        ({"audience": ""}, "at least 1 character"),
        ({"introspection_cache_ttl": 3601}, "less than or equal to 3600"),
        ({"inactive_cache_ttl": 301}, "less than or equal to 300"),
        ({"high_assurance_cache_ttl": 61}, "less than or equal to 60"),
        ({"verified_cache_ttl": -1}, "greater than or equal to 0"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_policy_refused(fields: dict[str, Any], message: str) -> None:
    data = {"name": "api", "audience": "aud", **fields}
    with pytest.raises(pydantic.ValidationError, match=message):
        Policy(**data)


@pytest.mark.parametrize("leeway", [0, 300])
def test_policy_leeway_bounds_inclusive(leeway: float) -> None:
    assert Policy(name="a", audience="b", leeway=leeway).leeway == leeway


def test_policy_sequences_accept_lists_and_become_tuples() -> None:
    policy = Policy(
        name="a", audience="b", issuers=[AS], algorithms=["ES256"], required_scopes=["read"]
    )
    assert policy.issuers == (AS,)
    assert policy.algorithms == ("ES256",)
    assert policy.required_scopes == ("read",)
    assert isinstance(policy.required_scopes, tuple)


@pytest.mark.parametrize("field", ["issuers", "algorithms", "required_scopes"])
def test_policy_sequences_refuse_plain_strings(field: str) -> None:
    # A bare string must not become a tuple of characters.
    with pytest.raises(pydantic.ValidationError, match="'str' instances are not allowed"):
        Policy(name="a", audience="b", **{field: "RS256"})


def test_policy_hmac_opt_in() -> None:
    assert Policy(name="a", audience="b", algorithms=("HS256",)).algorithms == ("HS256",)


# -- Settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("jwks_stale_window", 86400),
        ("jwks_min_ttl", 3600),
        ("jwks_max_ttl", 7 * 86400),
        ("jwks_default_ttl", 7 * 86400),
        ("metadata_ttl", 7 * 86400),
        ("jwks_refresh_cooldown", 300),
    ],
)
def test_no_duration_can_turn_key_rotation_off(name: str, limit: float) -> None:
    # Issue 14: 10 years was accepted for the stale window and the minimum TTL, which
    # kept a withdrawn or rotated key trusted for as long.
    assert getattr(Settings(**{name: limit}), name) == limit
    with pytest.raises(pydantic.ValidationError, match="less than or equal"):
        Settings(**{name: limit + 1})
    with pytest.raises(pydantic.ValidationError, match="less than or equal"):
        Settings(**{name: 10 * 365 * 86400})


def test_error_descriptions_setting() -> None:
    assert Settings().error_descriptions == "detailed"
    assert Settings(error_descriptions="generic").error_descriptions == "generic"
    with pytest.raises(pydantic.ValidationError):
        Settings(error_descriptions="verbose")  # type: ignore[arg-type]


def test_static_hmac_key_is_masked_in_dumps() -> None:
    # Issue 14 rule 6: client secrets were masked in dumps, a static HMAC key was not.
    key = "c2VjcmV0LWhtYWMta2V5LW5ldmVyLXNob3duLTEyMzQ1Njc4OTA"
    jwks = {"keys": [{"kty": "oct", "kid": "h1", "alg": "HS256", "k": key}]}
    cfg = build_config(
        issuers=[Issuer(AS, static_jwks=jwks, client_auth=basic())],
        policies=[Policy(name="p", audience="a", algorithms=["HS256"])],
    )
    for text in (
        repr(cfg),
        str(cfg),
        repr(cfg.model_dump()),
        cfg.model_dump_json(),
        repr(cfg.issuers[0].model_dump(mode="json")),
    ):
        assert key not in text
        assert SECRET not in text
    dumped = cfg.model_dump()["issuers"][0]["static_jwks"]
    assert dumped == {"keys": [{"kty": "oct", "kid": "h1", "alg": "HS256", "k": "**********"}]}
    # The configured key itself is untouched: the guard still verifies with it.
    assert cfg.issuers[0].static_jwks is not None
    assert cfg.issuers[0].static_jwks["keys"][0]["k"] == key


def test_private_members_of_a_static_key_are_masked_too() -> None:
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "xx", "y": "yy", "d": "private-d"}]}
    dumped = Issuer(AS, static_jwks=jwks).model_dump_json()
    assert "private-d" not in dumped
    assert '"x":"xx"' in dumped


def test_settings_defaults_and_bounds() -> None:
    settings = Settings()
    assert settings.jwks_min_ttl <= settings.jwks_default_ttl <= settings.jwks_max_ttl
    with pytest.raises(pydantic.ValidationError, match="jwks_min_ttl must not exceed"):
        Settings(jwks_min_ttl=100, jwks_max_ttl=50)
    with pytest.raises(pydantic.ValidationError, match="greater than 0"):
        Settings(http_timeout=0)
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 256"):
        Settings(max_token_length=10)
    assert Settings(introspection_cache_size=0).introspection_cache_size == 0


# -- GuardConfig --------------------------------------------------------------------------


def config(**data: Any) -> GuardConfig:
    data.setdefault("issuers", [Issuer(AS)])
    data.setdefault("policies", [Policy(name="api", audience="aud")])
    return GuardConfig(**data)


def test_guard_config_minimal() -> None:
    cfg = config()
    assert cfg.settings == Settings()
    assert cfg.issuers[0].issuer == AS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"issuers": [Issuer(AS), Issuer(AS)]}, "issuers must be unique"),
        (
            {"policies": [Policy(name="p", audience="a"), Policy(name="p", audience="b")]},
            "policy names must be unique",
        ),
        (
            {"policies": [Policy(name="p", audience="a", issuers=("https://other.example",))]},
            "policy 'p' trusts unknown issuer 'https://other.example'",
        ),
        (
            {
                "issuers": [Issuer(AS), Issuer("https://b.example")],
                "policies": [
                    Policy(
                        name="p",
                        audience="a",
                        issuers=(AS,),
                        introspection_issuer="https://b.example",
                    )
                ],
            },
            "introspection_issuer is not one of its issuers",
        ),
        (
            {
                "policies": [
                    Policy(name="p", audience="a", introspection_issuer="https://x.example")
                ]
            },
            "introspection_issuer is not one of its issuers",
        ),
        ({"issuers": []}, "at least 1 item"),
        ({"policies": []}, "at least 1 item"),
    ],
)
def test_guard_config_inconsistent(data: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        config(**data)


def test_guard_config_introspection_issuer_among_all() -> None:
    cfg = config(policies=[Policy(name="p", audience="a", introspection_issuer=AS)])
    assert cfg.policies[0].introspection_issuer == AS


def test_policy_with_empty_issuers_is_refused() -> None:
    with pytest.raises((pydantic.ValidationError, ConfigurationError)):
        config(
            issuers=[Issuer(AS), Issuer("https://b.example")],
            policies=[Policy(name="p", audience="a", issuers=())],
        )


# -- build_config / load_config -------------------------------------------------------------


TOML = """
[settings]
http_timeout = 2.5
jwks_refresh_cooldown = 5

[[issuers]]
issuer = "https://as.example"
jwks_uri = "https://as.example/jwks"
introspection_endpoint = "https://as.example/introspect"

[issuers.client_auth]
method = "client_secret_basic"
client_id = "rs"
client_secret_env = "TG_TEST_SECRET"

[[issuers]]
issuer = "http://127.0.0.1:8080"
allow_insecure_http = true

[[policies]]
name = "api"
audience = "https://api.example"
issuers = ["https://as.example"]
required_scopes = ["read"]
mode = "high_assurance"
"""


def test_load_config_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", SECRET)
    path = tmp_path / "tokenguard.toml"
    path.write_text(TOML, encoding="utf-8")
    for source in (path, str(path)):
        cfg = load_config(source)
        assert cfg.settings.http_timeout == 2.5
        assert cfg.settings.jwks_refresh_cooldown == 5
        first, second = cfg.issuers
        assert isinstance(first.client_auth, ClientSecretBasic)
        assert first.client_auth.client_secret.get_secret_value() == SECRET
        assert second.allow_insecure_http is True
        policy = cfg.policies[0]
        assert policy.issuers == ("https://as.example",)
        assert policy.required_scopes == ("read",)
        assert policy.mode == "high_assurance"
        assert SECRET not in repr(cfg)
        assert SECRET not in str(cfg)


def test_load_config_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_TOKEN", SECRET)
    cfg = load_config(
        {
            "issuers": [
                {
                    "issuer": AS,
                    "client_auth": {"method": "bearer", "token_env": "TG_TEST_TOKEN"},
                }
            ],
            "policies": [{"name": "api", "audience": "aud", "algorithms": ["ES256"]}],
        }
    )
    auth = cfg.issuers[0].client_auth
    assert isinstance(auth, BearerToken)
    assert auth.token.get_secret_value() == SECRET
    assert cfg.policies[0].algorithms == ("ES256",)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read configuration file .*No such file"):
        load_config(tmp_path / "missing.toml")


def test_load_config_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[[issuers]\nissuer = "{SECRET}"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid TOML") as info:
        load_config(path)
    assert SECRET not in str(info.value)
    assert str(path) in str(info.value)  # which file
    assert "line 1" in str(info.value)
    assert info.value.status_code == 500


def test_load_config_not_utf8(tmp_path: Path) -> None:
    # Latin-1 text (an editor's default) with a secret on the bad line.
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        b'[[issuers]]\nissuer = "https://as.example.com"\n'
        + b'# caf\xe9\nclient_secret = "'
        + SECRET.encode()
        + b'"\n'
    )
    with pytest.raises(ConfigurationError, match="not UTF-8") as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3, column 6" in message
    assert SECRET not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize("source", ["bad\x00path.toml", 42, {1: "x"}])
def test_load_config_bad_sources_are_configuration_errors(source: Any) -> None:
    with pytest.raises(ConfigurationError):
        load_config(source)


def test_load_config_collects_every_problem() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(
            {
                "issuers": [{"issuer": "http://as.example"}],
                "policies": [{"name": "p", "audience": "a", "leeway": 1000}],
            }
        )
    message = info.value.description
    assert message.startswith("invalid tokenguard configuration: ")
    assert "issuers.0: Value error, issuer must use https" in message
    assert "policies.0.leeway: Input should be less than or equal to 300" in message


def test_load_config_model_level_error() -> None:
    with pytest.raises(ConfigurationError, match="config: Value error, issuers must be unique"):
        load_config(
            {
                "issuers": [{"issuer": AS}, {"issuer": AS}],
                "policies": [{"name": "p", "audience": "a"}],
            }
        )


def test_build_config_returns_guard_config() -> None:
    cfg = build_config(issuers=[{"issuer": AS}], policies=[{"name": "p", "audience": "a"}])
    assert isinstance(cfg, GuardConfig)


# -- secrets never in messages --------------------------------------------------------------


def _issuer_with_auth(auth: Any) -> dict[str, Any]:
    return {
        "issuers": [{"issuer": AS, "client_auth": auth}],
        "policies": [{"name": "p", "audience": "a"}],
    }


@pytest.mark.parametrize(
    "auth",
    [
        {"method": "client_secret_basic", "client_id": "rs", "client_secret": 98765432123},
        {"method": "client_secret_basic", "client_id": "rs", "client_secret": [SECRET]},
        {"method": "client_secret_post", "client_id": "", "client_secret": SECRET},
        {"method": "client_secret_post", "client_id": "rs", "client_secret": SECRET, "x": SECRET},
        {"method": "client_secret_post", "client_id": 7, "client_secret": SECRET},
        {"method": "bearer", "token": {"value": SECRET}},
        {
            "method": "private_key_jwt",
            "client_id": "rs",
            "private_key": SECRET,
            "algorithm": "HS256",
        },
        {
            "method": "private_key_jwt",
            "client_id": "rs",
            "private_key": SECRET,
            "assertion_lifetime": 5,
        },
        {"client_id": "rs", "client_secret": SECRET},
        SECRET,
    ],
)
def test_configuration_error_never_contains_secret(auth: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(_issuer_with_auth(auth))
    error = info.value
    for text in (str(error), repr(error), error.description, error.www_authenticate()):
        assert SECRET not in text
        assert "98765432123" not in text
    assert error.__cause__ is None
    # No context at all (not merely a hidden one): the ValidationError holds the input.
    assert error.__context__ is None


def test_configuration_error_both_secret_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_SECRET", "from-env")
    auth = {
        "method": "client_secret_post",
        "client_id": "rs",
        "client_secret": SECRET,
        "client_secret_env": "TG_TEST_SECRET",
    }
    with pytest.raises(
        ConfigurationError, match="give either client_secret or client_secret_env"
    ) as info:
        load_config(_issuer_with_auth(auth))
    assert SECRET not in str(info.value)
    assert "from-env" not in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "TG_TEST_MISSING",
        # A secret pasted where the variable's name goes: never echoed.
        "s3cr3t-Pasted-By-Mistake-9f8e7d",
        5,
        "",
    ],
)
def test_configuration_error_env_missing(monkeypatch: pytest.MonkeyPatch, name: object) -> None:
    monkeypatch.delenv("TG_TEST_MISSING", raising=False)
    auth = {"method": "client_secret_basic", "client_id": "rs", "client_secret_env": name}
    with pytest.raises(ConfigurationError, match="client_secret_env is not set") as info:
        load_config(_issuer_with_auth(auth))
    if name:
        assert str(name) not in info.value.description.replace("client_secret", "")
    assert "issuers.0.client_auth" in info.value.description  # where it is
    # ... and only that: not pydantic's consequence "issuers: at least 1 item".
    assert "at least 1 item" not in info.value.description


def test_configuration_error_env_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_EMPTY", "")
    auth = {
        "method": "client_secret_basic",
        "client_id": "rs",
        "client_secret_env": "TG_TEST_EMPTY",
    }
    with pytest.raises(ConfigurationError, match="client_secret_env is empty"):
        load_config(_issuer_with_auth(auth))


def test_config_reprs_hide_secrets() -> None:
    cfg = config(issuers=[Issuer(AS, client_auth=ClientSecretPost("rs", SECRET))])
    for text in (repr(cfg), str(cfg), repr(cfg.issuers[0]), repr(cfg.issuers[0].client_auth)):
        assert SECRET not in text
    assert SECRET not in cfg.model_dump_json()


def test_issuer_str_hides_static_symmetric_key() -> None:
    issuer = Issuer(AS, static_jwks={"keys": [{"kty": "oct", "k": SECRET}]})
    assert SECRET not in repr(issuer)
    assert SECRET not in str(issuer)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClientSecretBasic("rs", 98765432123),
        lambda: ClientSecretPost("rs", SECRET, unknown=SECRET),
        lambda: BearerToken([SECRET]),
        lambda: PrivateKeyJWT("rs", SECRET),  # a key that does not load
        lambda: Issuer(AS, client_auth={"method": "bearer", "token": [SECRET]}),
    ],
)
def test_constructor_validation_error_never_contains_secret(build: Any) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        build()
    # pydantic may shorten a long input to its head and tail: check a fragment too.
    assert SECRET[-12:] not in str(info.value)
    assert "98765432123" not in str(info.value)


def test_required_claim_values_and_audience_claim() -> None:
    policy = Policy(
        name="p",
        audience="client-1",
        audience_claim="client_id",
        required_claim_values={"token_use": "access"},
    )
    assert policy.audience_claim == "client_id"
    assert dict(policy.required_claim_values) == {"token_use": "access"}
    assert Policy(name="p", audience="a").audience_claim == "aud"
    for bad in ({"": "x"}, {"token_use": 1}, {"token_use": None}):
        with pytest.raises(pydantic.ValidationError):
            Policy(name="p", audience="a", required_claim_values=bad)
    with pytest.raises(pydantic.ValidationError):
        Policy(name="p", audience="a", audience_claim="azp")  # type: ignore[arg-type]
