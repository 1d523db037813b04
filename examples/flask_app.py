"""A Flask API protected by tokenguard.

tokenguard dev-server --port 9000          # prints the client id and secret
export CLIENT_ID=... CLIENT_SECRET=...     # ISSUER defaults to http://127.0.0.1:9000
waitress-serve --port 8000 examples.flask_app:app     # or: flask --app examples.flask_app run
"""

import functools
import os

from flask import Flask

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.flask import current_token, metadata_blueprint, require_token

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
