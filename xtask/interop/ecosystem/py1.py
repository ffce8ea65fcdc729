"""The official Python SDK 1.x client (`mcp` 1.x: ClientSession over streamable HTTP)
running one plan of the ecosystem matrix (`cargo xtask ecosystem`); see plan.md.

usage: python py1.py URL PLAN_JSON
"""

import json
import sys

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from common import run_plan, sdk_op


async def main(url, plan):
    async def sample(context, params):
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the interop client"),
            model="interop",
        )

    async def elicit(context, params):
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///interop", name="interop")])

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(
            read,
            write,
            sampling_callback=sample,
            elicitation_callback=elicit,
            list_roots_callback=roots,
        ) as client:
            await client.initialize()

            op = sdk_op(client, anyio)
            await run_plan(plan, op)


anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
