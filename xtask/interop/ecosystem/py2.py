"""The official Python SDK 2.x client (`mcp` 2.x) running one plan of the ecosystem
matrix (`cargo xtask ecosystem`): see plan.md beside this file.

usage: python py2.py URL MODE PLAN_JSON   (MODE: auto, legacy, 2026-07-28)
"""

import json
import sys

import anyio
import mcp.types as types
from mcp import Client

from common import run_plan, sdk_op


async def main(url, mode, plan):
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

    async with Client(
        url,
        mode=mode,
        sampling_callback=sample,
        elicitation_callback=elicit,
        list_roots_callback=roots,
    ) as client:

        op = sdk_op(client, anyio)
        await run_plan(plan, op)


anyio.run(main, sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
