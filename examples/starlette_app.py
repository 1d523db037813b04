"""A Starlette API protected by tokenguard.

tokenguard dev-server --port 9000          # prints the client id and secret
export CLIENT_ID=... CLIENT_SECRET=...     # ISSUER defaults to http://127.0.0.1:9000
uvicorn examples.starlette_app:app --port 8000
"""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.starlette import TokenGuardBackend, require_token

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
backend = TokenGuardBackend(guard, realm="orders", resource=RESOURCE)


async def public(request: Request) -> JSONResponse:
    return JSONResponse({"public": True})


@require_token("orders:read")
async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"subject": request.user.identity, "scopes": request.auth.scopes})


@require_token("orders:write", acr_values=["mfa"], max_age=300)
async def cancel(request: Request) -> JSONResponse:
    order_id = int(request.path_params["order_id"])
    return JSONResponse({"cancelled": order_id, "by": request.user.identity})


app = Starlette(
    routes=[
        Route("/public", public),
        Route("/orders", orders),
        Route("/orders/{order_id:int}", cancel, methods=["DELETE"]),
        backend.metadata_route(),  # /.well-known/oauth-protected-resource
    ],
    middleware=[backend.middleware()],
)
