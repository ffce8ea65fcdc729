"""An MCP server on the official Python SDK (mcp 2.x), traced: the SDK continues the
trace a request carries in `_meta` (its own OpenTelemetry support) and exports its
spans as `python-backend`. Its tool `echo` also answers with the `traceparent` the
request carried, in `_meta` and in the HTTP header.

usage: python server.py PORT COLLECTOR
"""

import json
import sys

from common import export_to
from mcp.server.mcpserver import Context, MCPServer

port, collector = int(sys.argv[1]), sys.argv[2]
export_to(collector, "python-backend")
server = MCPServer("hale-interop-traced")


@server.tool()
def echo(text: str, ctx: Context) -> str:
    """Returns its text, and the trace context the request came with."""
    meta = ctx.request_context.meta
    in_meta = getattr(meta, "traceparent", None) if meta is not None else None
    if in_meta is None and isinstance(meta, dict):
        in_meta = meta.get("traceparent")
    headers = ctx.headers or {}
    return json.dumps({"text": text, "meta": in_meta, "header": headers.get("traceparent")})


server.run(transport="streamable-http", host="127.0.0.1", port=port)
