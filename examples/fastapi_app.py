"""A FastAPI API protected by tokenguard.

    tokenguard dev-server --port 9000     # in another terminal; paste the lines it prints:
                                          # they export TOKENGUARD_CLIENT_ID and _SECRET, set $JWT
    uvicorn examples.fastapi_app:app --port 8000
    curl -H "Authorization: Bearer $JWT" http://127.0.0.1:8000/orders

TOKENGUARD_ISSUER, TOKENGUARD_AUDIENCE and TOKENGUARD_RESOURCE default to the dev
server, its tokens' audience and this app's address.
"""

import os
from typing import Annotated

from fastapi import FastAPI, Security

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard, TokenInfo
from tokenguard.fastapi import TokenGuardBearer

ISSUER = os.environ.get("TOKENGUARD_ISSUER", "http://127.0.0.1:9000")
CLIENT_ID = os.environ["TOKENGUARD_CLIENT_ID"]  # to introspect opaque tokens
CLIENT_SECRET = os.environ["TOKENGUARD_CLIENT_SECRET"]
AUDIENCE = os.environ.get("TOKENGUARD_AUDIENCE", "urn:test:api")
RESOURCE = os.environ.get("TOKENGUARD_RESOURCE", "http://127.0.0.1:8000")  # this API (RFC 9728)

guard = TokenGuard(
    issuers=[
        Issuer(
            ISSUER,
            client_auth=ClientSecretBasic(CLIENT_ID, CLIENT_SECRET),
            allow_insecure_http=True,  # only for a loopback dev server; use https in production
        )
    ],
    policies=[Policy(name="orders", audience=AUDIENCE)],
)
auth = TokenGuardBearer(guard, realm="orders", resource=RESOURCE)
# RFC 9470 step-up: this one also needs a multi-factor login less than 5 minutes old.
recent_mfa = TokenGuardBearer(
    guard, realm="orders", resource=RESOURCE, acr_values=["mfa"], max_age=300
)

app = FastAPI()
app.include_router(auth.metadata_router())  # /.well-known/oauth-protected-resource


@app.get("/public")
async def public() -> dict:
    return {"public": True}


@app.get("/orders")
async def orders(info: Annotated[TokenInfo, Security(auth, scopes=["orders:read"])]) -> dict:
    return {"subject": info.subject, "scopes": sorted(info.scopes)}


@app.delete("/orders/{order_id}")
async def cancel(
    order_id: int, info: Annotated[TokenInfo, Security(recent_mfa, scopes=["orders:write"])]
) -> dict:
    return {"cancelled": order_id, "by": info.subject}
