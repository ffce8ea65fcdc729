"""The official Python SDK client (mcp 2.x) answering a server's elicitation through
whatever the protocol era uses: a request mid-call (handshake era) or an input_required
round (2026-07-28). Through hale vmcp over a handshake-era backend, the vMCP turns the
backend's request into the 2026-07-28 round.

usage: python python_elicit.py URL MODE TOOL

Prints one JSON object: {"asked": the message the callback saw or null,
"call": the tool's text or null, "error": message or null}
"""

import json
import sys

import anyio
from interop_common import failure
import mcp.types as types
from mcp import Client


async def main(url, mode, tool):
    out = {"asked": None, "call": None, "error": None}

    async def elicit(context, params):
        out["asked"] = params.message
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    try:
        async with Client(url, mode=mode, elicitation_callback=elicit) as client:
            result = await client.call_tool(tool, {"message": "Your name?"})
            text = " ".join(getattr(c, "text", "") for c in result.content)
            out["error" if result.is_error else "call"] = text
    except BaseException as e:  # noqa: BLE001 - reported, judged by the caller
        out["error"] = failure(e)
    print(json.dumps(out), flush=True)


anyio.run(main, *sys.argv[1:4])
