"""A fastmcp 4.x server for the ecosystem matrix: a tool, a tool that reports progress,
a resource and a prompt.

usage: python fastmcp_server.py PORT
"""

import sys

import anyio
from fastmcp import Context, FastMCP

mcp = FastMCP("interop-fastmcp")


@mcp.tool
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@mcp.tool
async def count_up(steps: int, ctx: Context) -> str:
    """Counts to `steps`, reporting progress at each step."""
    for step in range(1, steps + 1):
        await ctx.report_progress(progress=step, total=steps)
        await anyio.sleep(0.05)
    return f"counted to {steps}"


@mcp.resource("data://greeting")
def greeting() -> str:
    """A fixed greeting."""
    return "hello from fastmcp"


@mcp.prompt
def review(code: str) -> str:
    """Asks for a review of `code`."""
    return f"Please review this code:\n{code}"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), show_banner=False)
