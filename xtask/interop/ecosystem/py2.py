"""The official Python SDK 2.x client (`mcp` 2.x) running one plan of the ecosystem
matrix (`cargo xtask ecosystem`): see plan.md beside this file.

usage: python py2.py URL MODE PLAN_JSON   (MODE: auto, legacy, 2026-07-28)
"""

import json
import sys

import anyio
import mcp.types as types
from mcp import Client

from common import dump, run_plan


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

        async def op(step):
            kind = step["op"]
            if kind == "list_tools":
                return sorted(t.name for t in (await client.list_tools()).tools)
            if kind == "list_resources":
                return sorted(r.uri for r in (await client.list_resources()).resources)
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

                result = await client.call_tool(step["tool"], step.get("args", {}), progress_callback=progress)
                # Every notification that belongs to the call must come before its result.
                return {"progress": seen, "result": dump(result)}
            if kind == "cancel":
                with anyio.move_on_after(step["after_ms"] / 1000):
                    await client.call_tool(step["tool"], step.get("args", {}))
                then = step["then"]
                return {"after": dump(await client.call_tool(then["tool"], then.get("args", {})))}
            raise ValueError(f"unknown op {kind}")

        await run_plan(plan, op)


anyio.run(main, sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
