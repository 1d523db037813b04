"""A Starlette API protected by tokenguard.

    tokenguard dev-server --port 9000     # in another terminal; paste the lines it prints:
                                          # they export TOKENGUARD_CLIENT_ID and _SECRET, set $JWT
    uvicorn examples.starlette_app:app --port 8000
    curl -H "Authorization: Bearer $JWT" http://127.0.0.1:8000/orders

TOKENGUARD_ISSUER, TOKENGUARD_AUDIENCE and TOKENGUARD_RESOURCE default to the dev
server, its tokens' audience and this app's address.
"""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.starlette import TokenGuardBackend, require_token

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
