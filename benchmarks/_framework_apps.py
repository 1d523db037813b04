"""The apps of the framework benchmark: one unprotected and one protected endpoint each,
otherwise identical. Configured from the environment (``ISSUER``, ``AUDIENCE``)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from flask import Flask

from tokenguard import Issuer, Policy, TokenGuard, TokenInfo
from tokenguard.fastapi import TokenGuardBearer
from tokenguard.flask import require_token

guard = TokenGuard(
    issuers=[Issuer(os.environ.get("ISSUER", "http://127.0.0.1:9000"), allow_insecure_http=True)],
    policies=[Policy(name="api", audience=os.environ.get("AUDIENCE", "urn:test:api"))],
)
auth = TokenGuardBearer(guard)

fastapi_app = FastAPI()


@fastapi_app.get("/open")
async def fastapi_open() -> dict[str, Any]:
    return {"ok": True}


@fastapi_app.get("/protected")
async def fastapi_protected(
    info: Annotated[TokenInfo, Security(auth, scopes=["orders:read"])],
) -> dict[str, Any]:
    return {"ok": True}


# For reference: FastAPI's own HTTPBearer, which only reads the header (no validation):
# the cost of any FastAPI security dependency.
bare_bearer = HTTPBearer()


@fastapi_app.get("/reference")
async def fastapi_reference(
    credentials: Annotated[HTTPAuthorizationCredentials, Security(bare_bearer)],
) -> dict[str, Any]:
    return {"ok": True}


flask_app = Flask(__name__)


@flask_app.get("/open")
def flask_open() -> dict[str, Any]:
    return {"ok": True}


@flask_app.get("/protected")
@require_token(guard, scopes=["orders:read"])
def flask_protected() -> dict[str, Any]:
    return {"ok": True}
