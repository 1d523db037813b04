"""A FastAPI API protected by tokenguard.

tokenguard dev-server --port 9000          # prints the client id and secret
export CLIENT_ID=... CLIENT_SECRET=...     # ISSUER defaults to http://127.0.0.1:9000
uvicorn examples.fastapi_app:app --port 8000
"""

import os
from typing import Annotated

from fastapi import FastAPI, Security

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard, TokenInfo
from tokenguard.fastapi import TokenGuardBearer

guard = TokenGuard(
    issuers=[
        Issuer(
            os.environ.get("ISSUER", "http://127.0.0.1:9000"),
            client_auth=ClientSecretBasic(os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"]),
            allow_insecure_http=True,  # only for a loopback dev server; use https in production
        )
    ],
    policies=[Policy(name="orders", audience=os.environ.get("AUDIENCE", "urn:orders"))],
)
RESOURCE = os.environ.get("RESOURCE", "http://127.0.0.1:8000")  # this API's URL (RFC 9728)
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
