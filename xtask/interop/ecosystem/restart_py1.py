"""A Python SDK 1.x client session that lives through its server's restart: calls echo,
waits for a line on stdin (the server is restarted meanwhile), calls echo again on the
same session. Prints one JSON line per call: {"call": n, "text": ..., "session": id} or
{"call": n, "error": ...}.

usage: python restart_py1.py URL
"""

import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from common import failure


async def main(url):
    async with streamablehttp_client(url) as (read, write, session_id):
        async with ClientSession(read, write) as client:
            await client.initialize()
            for n in (1, 2):
                if n == 2:
                    await anyio.to_thread.run_sync(sys.stdin.readline)
                try:
                    result = await client.call_tool("echo", {"message": f"call {n}"})
                    line = {"call": n, "text": result.content[0].text, "session": session_id()}
                except BaseException as e:  # noqa: BLE001 - reported, judged by the caller
                    line = {"call": n, "error": failure(e)}
                print(json.dumps(line), flush=True)


anyio.run(main, sys.argv[1])
