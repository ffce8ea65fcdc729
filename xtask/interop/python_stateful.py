"""A stateful MCP server on the official Python SDK (mcp 2.x): `remember(value)` keeps a
value for the calling session and `recall()` returns it, for hale's per-client session
checks.

usage: python python_stateful.py PORT
"""

import sys

from mcp.server.mcpserver import Context, MCPServer

port = int(sys.argv[1])
server = MCPServer("hale-interop-stateful")
memory: dict[str, str] = {}


def key(ctx: Context) -> str:
    """The caller's session: its Mcp-Session-Id (one per client session)."""
    request = ctx.request_context.request
    return request.headers.get("mcp-session-id", "") if request is not None else ""


@server.tool()
def remember(value: str, ctx: Context) -> str:
    """Keeps a value for this session."""
    memory[key(ctx)] = value
    return "ok"


@server.tool()
def recall(ctx: Context) -> str:
    """Returns this session's value, or "nothing"."""
    return memory.get(key(ctx), "nothing")


server.run(transport="streamable-http", host="127.0.0.1", port=port)
