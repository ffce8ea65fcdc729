"""A small MCP server on the official Python SDK (mcp 2.x), for hale's interop checks.

usage: python python_server.py streamable-http|sse PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

transport, port = sys.argv[1], int(sys.argv[2])
server = MCPServer("hale-interop-python")


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool()
def add(a: float, b: float) -> float:
    """Adds two numbers."""
    return a + b


@server.resource("interop://greeting")
def greeting() -> str:
    """A fixed greeting."""
    return "hello from python"


@server.prompt()
def greet(name: str) -> str:
    """Greets someone."""
    return f"Hello {name}"


server.run(transport=transport, host="127.0.0.1", port=port)
