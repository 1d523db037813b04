"""Rule 6 (issue 14): an error keeps nothing of the token, not even out of sight.

``raise ... from None`` only hides the context from tracebacks (``__suppress_context__``);
the context is still kept on the error, and reporters that walk ``__context__`` show it.
A ``JSONDecodeError`` there carries the decoded payload as ``.doc``, a
``UnicodeDecodeError`` the bytes as ``.object``. Every refusal below must come without
context and without cause, whichever shell raised it; so must configuration errors,
whose context (pydantic's ``ValidationError``, ``TOMLDecodeError``) holds secrets.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tokenguard import (
    ConfigurationError,
    Issuer,
    Policy,
    TokenGuard,
    TokenGuardError,
    load_config,
)

from ..conftest import Driver
from . import forge

ISSUER = "https://as.example.com"
AUDIENCE = "urn:context:api"
SECRET_TEXT = "Sensitive-Claim-Text-7f3a9c"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _guard() -> TokenGuard:
    jwk = forge.jwk_of(_KEY.public_key(), kid="k1", alg="RS256")
    return TokenGuard(
        issuers=[Issuer(ISSUER, static_jwks={"keys": [jwk]})],
        policies=[Policy(name="api", audience=AUDIENCE, mode="jwt", algorithms=["RS256"])],
    )


def _claims() -> bytes:
    now = int(time.time())
    return forge.raw_json(
        {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "name": SECRET_TEXT}
    )


HEADER = b'{"alg":"RS256","typ":"at+jwt","kid":"k1"}'

#: Tokens refused while their text was being decoded: each failed inside a parser.
MALFORMED: dict[str, tuple[bytes, bytes]] = {
    "payload-not-json": (HEADER, _claims()[:-1] + b', "x": tru}'),
    "payload-truncated": (HEADER, _claims()[:-5]),
    "payload-not-utf8": (HEADER, _claims()[:-1] + b', "x": "\xff\xfe"}'),
    "payload-duplicate": (HEADER, _claims()[:-1] + b', "name": "again"}'),
    "payload-nan": (HEADER, _claims()[:-1] + b', "x": NaN}'),
    "payload-too-deep": (HEADER, _claims()[:-1] + b', "x": ' + b"[" * 40 + b"]" * 40 + b"}"),
    "payload-lone-surrogate": (HEADER, _claims()[:-1] + b', "x": "\\ud800"}'),
    "header-not-json": (b'{"alg":"RS256","note":"' + SECRET_TEXT.encode() + b'"', _claims()),
    "header-duplicate-escaped": (
        b'{"alg":"RS256","n\\u003a":"' + SECRET_TEXT.encode() + b'","n\\u003a":1}',
        _claims(),
    ),
}


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__context__ or current.__cause__
    return seen


def _no_context(error: BaseException) -> None:
    assert error.__context__ is None, repr(error.__context__)
    assert error.__cause__ is None, repr(error.__cause__)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_token_error_has_no_context(check: Driver, case: str) -> None:
    header, payload = MALFORMED[case]
    token = forge.compact(header, payload, signature=b"\x01" * 256)
    guard = _guard()
    try:
        check(guard, token, "api")
    except TokenGuardError as error:
        caught: TokenGuardError = error
    else:
        pytest.fail("a malformed token passed")
    _no_context(caught)
    text = repr([vars(e) for e in _chain(caught)]) + "".join(map(repr, _chain(caught)))
    assert SECRET_TEXT not in text


@pytest.mark.parametrize(
    "segment",
    ["AB", "A", "ab+c", "ab/c", "YQ==", "\u00e9e"],
)
def test_base64_refusals_have_no_context(check: Driver, segment: str) -> None:
    token = f"{forge.segment(HEADER)}.{segment}.c2ln"
    try:
        check(_guard(), token, "api")
    except TokenGuardError as error:
        _no_context(error)
    else:
        pytest.fail("a malformed token passed")


def test_configuration_error_does_not_keep_the_validation_error() -> None:
    secret = "client-secret-not-to-be-kept"
    with pytest.raises(ConfigurationError) as info:
        TokenGuard(
            issuers=[
                {
                    "issuer": ISSUER,
                    "client_auth": {
                        "method": "client_secret_basic",
                        "client_id": "",
                        "client_secret": secret,
                    },
                }
            ],
            policies=[Policy(name="api", audience=AUDIENCE)],
        )
    _no_context(info.value)
    assert secret not in repr(vars(info.value))


def test_configuration_file_error_does_not_keep_the_document(tmp_path: Any) -> None:
    path = tmp_path / "guard.toml"
    path.write_text('[[issuers]]\nissuer = "https://as.example.com"\nsecret = "s3cr3t\n')
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    _no_context(info.value)


def test_unusable_private_key_error_has_no_context() -> None:
    from tokenguard import PrivateKeyJWT

    key_text = "-----BEGIN PRIVATE KEY-----\nnot-a-key-9d1e\n-----END PRIVATE KEY-----"
    with pytest.raises(pydantic.ValidationError) as info:
        PrivateKeyJWT("rs", key_text)
    [problem] = info.value.errors(include_input=False)
    _no_context(problem["ctx"]["error"])
    with pytest.raises(ConfigurationError) as config_info:
        TokenGuard(
            issuers=[
                {
                    "issuer": ISSUER,
                    "client_auth": {
                        "method": "private_key_jwt",
                        "client_id": "rs",
                        "private_key": key_text,
                    },
                }
            ],
            policies=[Policy(name="api", audience=AUDIENCE)],
        )
    _no_context(config_info.value)
    assert "not-a-key" not in repr(vars(config_info.value))


def test_client_secret_models_still_validate() -> None:
    # The rewritten error path still refuses what it refused, naming the field.
    with pytest.raises(ConfigurationError, match="client_id"):
        TokenGuard(
            issuers=[
                {
                    "issuer": ISSUER,
                    "client_auth": {"method": "client_secret_basic", "client_id": ""},
                }
            ],
            policies=[Policy(name="api", audience=AUDIENCE)],
        )
