"""An MCP client on the official Python SDK (mcp 2.x) that holds one session open to a
vMCP and reports what it sees, for hale's interop checks.

usage: python python_watch.py URL

Prints one JSON object per line on stdout:
  {"ready": true}                         once the session is initialized
  {"notification": "notifications/..."}   for every server notification, as it arrives
and answers commands read from stdin, one per line:
  list           -> {"tools": [names]}
  call NAME [JSON] -> {"ok": bool, "error": message or null, "ms": elapsed milliseconds,
                      "text": the first text content or null}; arguments {"text": "interop"}
                      unless JSON gives them
  quit           -> ends the session (DELETE) and exits
"""

import json
import sys
import time

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


def say(obj):
    print(json.dumps(obj), flush=True)


async def on_message(message):
    if isinstance(message, Exception):
        say({"transport_error": str(message)})
        return
    say({"notification": getattr(message, "method", type(message).__name__)})


async def main(url):
    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            say({"ready": True})
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                command = line.strip().split(" ", 1)
                if command[0] in ("", "quit"):
                    return
                if command[0] == "list":
                    result = await session.list_tools()
                    say({"tools": [t.name for t in result.tools]})
                elif command[0] == "call":
                    name, _, raw = command[1].partition(" ")
                    arguments = json.loads(raw) if raw.strip() else {"text": "interop"}
                    started = time.monotonic()
                    text = None
                    try:
                        result = await session.call_tool(name, arguments)
                        error = None if not result.is_error else str(result.content)
                        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
                        text = texts[0] if texts else None
                    except Exception as e:  # the JSON-RPC error is what we want to see
                        error = str(e)
                    ms = (time.monotonic() - started) * 1000
                    say({"ok": error is None, "error": error, "ms": round(ms, 1), "text": text})


anyio.run(main, sys.argv[1])
