"""A Flask API protected by tokenguard.

    tokenguard dev-server --port 9000     # in another terminal; paste the lines it prints:
                                          # they export TOKENGUARD_CLIENT_ID and _SECRET, set $JWT
    waitress-serve --port 8000 examples.flask_app:app
    curl -H "Authorization: Bearer $JWT" http://127.0.0.1:8000/orders

TOKENGUARD_ISSUER, TOKENGUARD_AUDIENCE and TOKENGUARD_RESOURCE default to the dev
server, its tokens' audience and this app's address.
"""

import functools
import os

from flask import Flask

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.flask import current_token, metadata_blueprint, require_token

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
protected = functools.partial(require_token, guard, realm="orders", resource=RESOURCE)

app = Flask(__name__)
app.register_blueprint(metadata_blueprint(guard, resource=RESOURCE))


@app.get("/public")
def public() -> dict:
    return {"public": True}


@app.get("/orders")
@protected(scopes=["orders:read"])
def orders() -> dict:
    return {"subject": current_token.subject, "scopes": sorted(current_token.scopes)}


@app.delete("/orders/<int:order_id>")
@protected(scopes=["orders:write"], acr_values=["mfa"], max_age=300)
def cancel(order_id: int) -> dict:
    return {"cancelled": order_id, "by": current_token.subject}
