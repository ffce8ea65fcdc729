"""Two clients on the official Python SDK (mcp 2.x), each with its own session, checking
that one never sees the other's state on a stateful server (directly or through hale).

usage: python python_pair.py URL

Prints one JSON object: {"a": what A recalls, "b": what B recalls before and after A
remembered, "b_after": ...}. Sessions need the handshake era: both clients use
mode="legacy".
"""

import json
import sys

import anyio
from mcp import Client


def text(result):
    return " ".join(getattr(c, "text", "") for c in result.content)


async def main(url):
    async with Client(url, mode="legacy") as a, Client(url, mode="legacy") as b:
        await a.call_tool("remember", {"value": "secret-of-a"})
        b_sees = text(await b.call_tool("recall", {}))
        await b.call_tool("remember", {"value": "secret-of-b"})
        a_sees = text(await a.call_tool("recall", {}))
        b_after = text(await b.call_tool("recall", {}))
    print(json.dumps({"a": a_sees, "b": b_sees, "b_after": b_after}), flush=True)


anyio.run(main, sys.argv[1])
