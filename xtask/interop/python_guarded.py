"""An MCP server on the official Python SDK (mcp 2.x) that wants a bearer token, for
hale's interop checks of a backend's outgoing credentials: its own bearer middleware
answers 401 (with its WWW-Authenticate challenge) unless the token is TOKEN.

usage: python python_guarded.py PORT TOKEN
"""

import sys

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

port, expected = int(sys.argv[1]), sys.argv[2]


class OneToken:
    async def verify_token(self, token):
        if token != expected:
            return None
        return AccessToken(token=token, client_id="hale-vmcp", scopes=[])


server = MCPServer(
    "hale-interop-guarded",
    token_verifier=OneToken(),
    auth=AuthSettings(
        issuer_url="http://127.0.0.1:9",
        resource_server_url=f"http://127.0.0.1:{port}/mcp",
    ),
)


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


server.run(transport="streamable-http", host="127.0.0.1", port=port)
