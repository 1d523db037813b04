"""An MCP server (official `mcp` SDK, streamable HTTP) protected by tokenguard.

tokenguard dev-server --port 9000          # prints the client id and secret
export CLIENT_ID=... CLIENT_SECRET=...     # ISSUER defaults to http://127.0.0.1:9000
uvicorn examples.mcp_server:app --port 8000
"""

import os

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer

from tokenguard import ClientSecretBasic, Issuer, Policy, TokenGuard
from tokenguard.mcp import TokenGuardVerifier

guard = TokenGuard(
    issuers=[
        Issuer(
            os.environ.get("ISSUER", "http://127.0.0.1:9000"),
            client_auth=ClientSecretBasic(os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"]),
            allow_insecure_http=True,  # only for a loopback dev server; use https in production
        )
    ],
    policies=[Policy(name="mcp", audience=os.environ.get("AUDIENCE", "urn:orders"))],
)
RESOURCE = os.environ.get("RESOURCE", "http://127.0.0.1:8000") + "/mcp"  # the MCP endpoint
verifier = TokenGuardVerifier(guard)
server = MCPServer(
    "orders",
    token_verifier=verifier,
    auth=verifier.auth_settings(RESOURCE, required_scopes=["orders:read"]),
)


@server.tool()
def whoami() -> str:
    """Who the access token was issued to."""
    token = get_access_token()
    return token.subject or token.client_id if token else "nobody"


app = verifier.protect(server.streamable_http_app())  # 503 / step-up answered by tokenguard
