"""client_auth.py: the four ways to authenticate to an introspection endpoint."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote_plus

import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization

from tokenguard.client_auth import (
    BearerToken,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJWT,
)

ISSUER = "https://as.example"
SECRET = "s3cr3t-Value-never-shown"


def apply(auth: Any, audience: str = ISSUER) -> tuple[dict[str, str], dict[str, str]]:
    form: dict[str, str] = {"token": "tok"}
    headers: dict[str, str] = {"Accept": "application/json"}
    auth.apply(form, headers, audience=audience)
    return form, headers


def pem(private_key: Any) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# -- client_secret_basic / client_secret_post -----------------------------------------------


def test_basic_positional_and_keyword() -> None:
    a = ClientSecretBasic("rs", SECRET)
    b = ClientSecretBasic(client_id="rs", client_secret=SECRET)
    assert a == b
    assert a.method == "client_secret_basic"
    assert a.client_secret.get_secret_value() == SECRET


def test_basic_header() -> None:
    form, headers = apply(ClientSecretBasic("rs", "pw"))
    assert form == {"token": "tok"}  # nothing added to the body
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"rs:pw").decode()
    assert headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        ("rs", "a+b/c:d%e f&g=h"),
        ("client:with:colons", "p@ss word+/=?#~"),
        ("ünïcode id", "sécret ✓"),
        ("id%20", "%2B"),
    ],
)
def test_basic_rfc6749_form_encoding(client_id: str, secret: str) -> None:
    _, headers = apply(ClientSecretBasic(client_id, secret))
    scheme, _, value = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    decoded = base64.b64decode(value, validate=True).decode("ascii")
    # Form-encoding removes every raw ':' so the user:password split is unambiguous.
    assert decoded.count(":") == 1
    user, _, password = decoded.partition(":")
    for raw in ("/", "&", "=", "@", "?", "#"):
        assert raw not in password
    assert unquote_plus(user) == client_id
    assert unquote_plus(password) == secret


def test_basic_exact_encoding() -> None:
    _, headers = apply(ClientSecretBasic("my client", "a+b/c:d%e f&g=h"))
    decoded = base64.b64decode(headers["Authorization"][6:]).decode()
    assert decoded == "my+client:a%2Bb%2Fc%3Ad%25e+f%26g%3Dh"


def test_post_body() -> None:
    form, headers = apply(ClientSecretPost("rs", "a+b c"))
    assert form == {"token": "tok", "client_id": "rs", "client_secret": "a+b c"}
    assert "Authorization" not in headers


def test_post_positional() -> None:
    auth = ClientSecretPost("rs", SECRET)
    assert auth.method == "client_secret_post"
    assert auth.client_id == "rs"


@pytest.mark.parametrize("cls", [ClientSecretBasic, ClientSecretPost])
def test_secret_never_in_repr(cls: Any) -> None:
    auth = cls("rs", SECRET)
    for text in (repr(auth), str(auth), repr(auth.model_dump()), auth.model_dump_json()):
        assert SECRET not in text


@pytest.mark.parametrize("cls", [ClientSecretBasic, ClientSecretPost])
def test_secret_from_env(cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_UNIT_SECRET", SECRET)
    auth = cls(client_id="rs", client_secret_env="TG_UNIT_SECRET")
    assert auth.client_secret.get_secret_value() == SECRET
    # Read once at construction.
    monkeypatch.setenv("TG_UNIT_SECRET", "changed")
    assert auth.client_secret.get_secret_value() == SECRET


def test_secret_env_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TG_UNIT_MISSING", raising=False)
    with pytest.raises(pydantic.ValidationError, match="client_secret_env is not set") as info:
        ClientSecretBasic(client_id="rs", client_secret_env="TG_UNIT_MISSING")
    assert "TG_UNIT_MISSING" not in str(info.value)


def test_secret_and_env_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_UNIT_SECRET", SECRET)
    with pytest.raises(pydantic.ValidationError, match="give either client_secret or"):
        ClientSecretPost("rs", "inline", client_secret_env="TG_UNIT_SECRET")


@pytest.mark.parametrize("cls", [ClientSecretBasic, ClientSecretPost])
def test_client_id_required(cls: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match="at least 1 character"):
        cls("", SECRET)
    with pytest.raises(pydantic.ValidationError, match="client_secret"):
        cls("rs")


def test_models_frozen() -> None:
    auth = ClientSecretBasic("rs", SECRET)
    with pytest.raises(pydantic.ValidationError):
        auth.client_id = "other"  # type: ignore[misc]


# -- bearer ------------------------------------------------------------------------------------


def test_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BearerToken(SECRET)
    form, headers = apply(auth)
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert form == {"token": "tok"}
    assert SECRET not in repr(auth)
    assert SECRET not in str(auth)
    monkeypatch.setenv("TG_UNIT_TOKEN", "env-token")
    assert BearerToken(token_env="TG_UNIT_TOKEN").token.get_secret_value() == "env-token"
    assert BearerToken(token=SECRET) == auth


# -- private_key_jwt ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key_name", "other_name"),
    [
        ("RS256", "rsa", "rsa_other"),
        ("PS256", "rsa", "rsa_other"),
        ("ES256", "p256", "p256_other"),
        ("EdDSA", "ed25519", "ed25519_other"),
    ],
)
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_private_key_jwt_assertion(
    keys: SimpleNamespace, alg: str, key_name: str, other_name: str
) -> None:
    private = getattr(keys, key_name)
    auth = PrivateKeyJWT("rs-client", pem(private), algorithm=alg, kid="key-1")
    before = time.time()
    form, headers = apply(auth)
    after = time.time()
    assert "Authorization" not in headers
    assert form["client_id"] == "rs-client"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    assert isinstance(assertion, str)
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == alg
    assert header["kid"] == "key-1"
    claims = jwt.decode(
        assertion,
        private.public_key(),
        algorithms=[alg],
        audience=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "jti"]},
    )
    assert claims["iss"] == claims["sub"] == "rs-client"
    assert claims["aud"] == ISSUER
    assert before - 1 <= claims["exp"] - 60 <= after + 1
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    # The wrong key does not verify it.
    other = getattr(keys, other_name).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(assertion, other, algorithms=[alg], audience=ISSUER)


def test_private_key_jwt_fresh_jti_and_lifetime(keys: SimpleNamespace) -> None:
    auth = PrivateKeyJWT("c", pem(keys.p384), algorithm="ES384", assertion_lifetime=300)
    first, _ = apply(auth)
    second, _ = apply(auth)
    a = jwt.decode(first["client_assertion"], keys.p384.public_key(), ["ES384"], audience=ISSUER)
    b = jwt.decode(second["client_assertion"], keys.p384.public_key(), ["ES384"], audience=ISSUER)
    assert a["jti"] != b["jti"]
    assert a["exp"] - a["iat"] == 300
    assert "kid" not in jwt.get_unverified_header(first["client_assertion"])


def test_private_key_jwt_audience_override(keys: SimpleNamespace) -> None:
    auth = PrivateKeyJWT("c", pem(keys.rsa), audience="https://as.example/token")
    form, _ = apply(auth, audience=ISSUER)
    claims = jwt.decode(
        form["client_assertion"],
        keys.rsa.public_key(),
        ["RS256"],
        audience="https://as.example/token",
    )
    assert claims["aud"] == "https://as.example/token"


def test_private_key_jwt_key_never_in_repr(keys: SimpleNamespace) -> None:
    key_pem = pem(keys.rsa)
    auth = PrivateKeyJWT("c", key_pem)
    body = key_pem.splitlines()[1]
    assert body not in repr(auth)
    assert body not in str(auth)
    assert auth.algorithm == "RS256"
    assert auth.assertion_lifetime == 60


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_private_key_from_env(keys: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_UNIT_KEY", pem(keys.ed25519))
    auth = PrivateKeyJWT(client_id="c", private_key_env="TG_UNIT_KEY", algorithm="EdDSA")
    form, _ = apply(auth)
    jwt.decode(form["client_assertion"], keys.ed25519.public_key(), ["EdDSA"], audience=ISSUER)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithm": "HS256"}, "Input should be 'RS256'"),
        ({"algorithm": "none"}, "Input should be 'RS256'"),
        ({"assertion_lifetime": 9}, "greater than or equal to 10"),
        ({"assertion_lifetime": 601}, "less than or equal to 600"),
    ],
)
def test_private_key_jwt_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        PrivateKeyJWT("c", "pem", **fields)


def test_private_key_jwt_key_checked_at_construction(keys: SimpleNamespace) -> None:
    with pytest.raises(pydantic.ValidationError, match="not a usable RSA private key"):
        PrivateKeyJWT("c", "not a pem")
    with pytest.raises(pydantic.ValidationError, match="not a usable EC private key"):
        PrivateKeyJWT("c", pem(keys.rsa), algorithm="ES256")
    with pytest.raises(pydantic.ValidationError, match="not a usable OKP private key"):
        PrivateKeyJWT("c", pem(keys.p256), algorithm="EdDSA")
    public_pem = (
        keys.rsa.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(pydantic.ValidationError, match="must be a private key"):
        PrivateKeyJWT("c", public_pem)


def test_private_key_jwt_bad_key_via_config_hides_key() -> None:
    from tokenguard.config import load_config
    from tokenguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="not a usable RSA private key") as info:
        load_config(
            {
                "issuers": [
                    {
                        "issuer": ISSUER,
                        "client_auth": {
                            "method": "private_key_jwt",
                            "client_id": "c",
                            "private_key": SECRET,
                        },
                    }
                ],
                "policies": [{"name": "p", "audience": "a"}],
            }
        )
    assert SECRET not in str(info.value)
