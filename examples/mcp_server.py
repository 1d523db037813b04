"""An MCP server (official `mcp` SDK, streamable HTTP) protected by tokenguard.

    tokenguard dev-server --port 9000     # in another terminal; paste the lines it prints:
                                          # they export TOKENGUARD_CLIENT_ID and _SECRET, set $JWT
    uvicorn examples.mcp_server:app --port 8000
    # then connect an MCP client to http://127.0.0.1:8000/mcp with $JWT as its bearer token

TOKENGUARD_ISSUER, TOKENGUARD_AUDIENCE and TOKENGUARD_RESOURCE default to the dev
server, its tokens' audience and this app's address.
"""

import os

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.mcp import TokenGuardVerifier

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
    policies=[Policy(name="mcp", audience=AUDIENCE)],
)
verifier = TokenGuardVerifier(guard)
server = MCPServer(
    "orders",
    token_verifier=verifier,
    auth=verifier.auth_settings(RESOURCE + "/mcp", required_scopes=["orders:read"]),
)


@server.tool()
def whoami() -> str:
    """Who the access token was issued to."""
    token = get_access_token()
    return token.subject or token.client_id if token else "nobody"


app = verifier.protect(server.streamable_http_app())  # 503 / step-up answered by tokenguard
