"""Cold start (issue 10 §4): `import tokenguard` loads only what a first validation needs.

Measured in benchmarks/run.py (import time against the bare imports of the
dependencies); here, what must *not* be imported, so a new eager import of something
heavy or optional fails a test instead of slowing every serverless cold start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

NOT_AT_IMPORT = (
    "httpx",  # the shells: imported when a guard first needs one
    "asyncio",
    "jwt",  # pyjwt: never on the validation path (keys are read with cryptography)
    "authlib",  # client-assertion signing: at the first private_key_jwt request
    "joserfc",
    "click",  # the CLI
    "tokenguard.cli",
    "tokenguard.shells",
    "tokenguard.testing",
    "cryptography.x509",  # client certificates (RFC 8705): read when one is first presented
    "tomllib",  # configuration files: load_config
    # pydantic's plugin loader, run when a model's schema is first built: no schema is
    # built at import (every model defers it), so neither it nor the email package loads.
    "importlib.metadata",
    "email",
)


def _modules_after(code: str) -> set[str]:
    # Not measured by coverage: its subprocess patch (./dev test) reads its configuration
    # from pyproject.toml with tomllib in the child before tokenguard is imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_loads_nothing_the_first_validation_does_not_need() -> None:
    loaded = _modules_after("import tokenguard")
    assert {"tokenguard", "tokenguard.guard", "pydantic", "msgspec"} <= loaded
    assert not [m for m in NOT_AT_IMPORT if m in loaded]


def test_a_guard_with_local_keys_validates_without_any_http_stack() -> None:
    code = """
import base64, hmac, json, time, tokenguard
k = b"k" * 32
e = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
n = int(time.time())
h = e(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
claims = {"iss": "https://as.example", "aud": "api", "iat": n, "exp": n + 60}
p = e(json.dumps({**claims, "sub": "a", "client_id": "c", "jti": "j"}).encode())
t = f"{h}.{p}." + e(hmac.digest(k, f"{h}.{p}".encode(), "sha256"))
g = tokenguard.TokenGuard(
    issuers=[
        tokenguard.Issuer("https://as.example", static_jwks={"keys": [{"kty": "oct", "k": e(k)}]})
    ],
    policies=[tokenguard.Policy(name="api", audience="api", algorithms=["HS256"])],
)
assert g.validate(t).issuer == "https://as.example"
"""
    loaded = _modules_after(code)
    assert "tokenguard.shells.sync" in loaded  # the sync shell drove the flow
    assert "tokenguard.shells.aio" not in loaded  # the async one was never needed
    assert "jwt" not in loaded  # keys are read with cryptography alone (core/jwks.py)


def test_unknown_public_names_still_raise_attribute_error() -> None:
    import tokenguard

    with pytest.raises(AttributeError, match="no_such_name"):
        tokenguard.no_such_name  # noqa: B018


def test_client_certificate_alias_still_resolves_at_run_time() -> None:
    from cryptography import x509

    from tokenguard.core import mtls

    assert x509.Certificate in mtls.ClientCertificate.__args__
    with pytest.raises(AttributeError, match="no_such_name"):
        mtls.no_such_name  # noqa: B018
