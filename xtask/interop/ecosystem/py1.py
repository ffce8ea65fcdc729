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

from common import dump, run_plan


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

            async def op(step):
                kind = step["op"]
                if kind == "list_tools":
                    return sorted(t.name for t in (await client.list_tools()).tools)
                if kind == "list_resources":
                    return sorted(str(r.uri) for r in (await client.list_resources()).resources)
                if kind == "list_prompts":
                    return sorted(p.name for p in (await client.list_prompts()).prompts)
                if kind == "read":
                    return dump(await client.read_resource(step["uri"]))
                if kind == "prompt":
                    return dump(await client.get_prompt(step["name"], step.get("args")))
                if kind == "call":
                    return dump(await client.call_tool(step["tool"], step.get("args", {})))
                if kind == "progress":
                    seen = []

                    async def progress(p, total, message):
                        seen.append(p)

                    result = await client.call_tool(
                        step["tool"], step.get("args", {}), progress_callback=progress
                    )
                    return {"progress": seen, "result": dump(result)}
                if kind == "cancel":
                    with anyio.move_on_after(step["after_ms"] / 1000):
                        await client.call_tool(step["tool"], step.get("args", {}))
                    then = step["then"]
                    return {"after": dump(await client.call_tool(then["tool"], then.get("args", {})))}
                raise ValueError(f"unknown op {kind}")

            await run_plan(plan, op)


anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
