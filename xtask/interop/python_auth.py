"""The official Python SDK client (mcp 2.x) against an MCP endpoint that wants a bearer
token, for hale's interop checks.

usage: python python_auth.py URL MODE TOKEN

MODE is auto, legacy or 2026-07-28; TOKEN is the bearer token ("-" for none). Prints one
JSON object:
  {"tools": [names], "call": text or null, "error": message or null,
   "status": HTTP status of a bare POST with that token,
   "challenge": its WWW-Authenticate header or null,
   "metadata": the document resource_metadata points at, or null}
"""

import json
import re
import sys

import anyio
from interop_common import failure
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url, mode, token):
    headers = {} if token == "-" else {"Authorization": f"Bearer {token}"}
    out = {"tools": [], "call": None, "error": None, "status": None, "challenge": None, "metadata": None}
    try:
        async with create_mcp_http_client(headers=headers) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                tools = await client.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                result = await client.call_tool("echo", {"text": "with a token"})
                text = " ".join(getattr(c, "text", "") for c in result.content)
                if result.is_error:
                    out["error"] = text
                else:
                    out["call"] = text
    except BaseException as e:  # noqa: BLE001 - reported, judged by the caller
        out["error"] = failure(e)

    # What a client learns from a bare request: the status and the challenge, and the
    # RFC 9728 document the challenge points at.
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
    }
    try:
        # One connection for both, as an OAuth client follows a 401.
        async with httpx2.AsyncClient(timeout=10) as http:
            r = await http.post(url, json=initialize, headers={**headers, "Accept": "application/json, text/event-stream"})
            out["status"] = r.status_code
            challenge = r.headers.get("www-authenticate")
            out["challenge"] = challenge
            found = re.search(r'resource_metadata="([^"]+)"', challenge or "")
            if found:
                doc = await http.get(found.group(1))
                out["metadata"] = doc.json() if doc.status_code == 200 else {"status": doc.status_code}
    except BaseException as e:  # noqa: BLE001 - reported, judged by the caller
        out["error"] = (out["error"] + "; " if out["error"] else "") + failure(e)
    print(json.dumps(out), flush=True)


anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
