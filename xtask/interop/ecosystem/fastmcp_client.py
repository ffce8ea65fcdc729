"""The fastmcp 4.x client running one plan of the ecosystem matrix
(`cargo xtask ecosystem`); see plan.md beside this file.

usage: python fastmcp_client.py URL PLAN_JSON
"""

import json
import sys

import anyio
from fastmcp import Client

from common import dump, run_plan


async def main(url, plan):
    async with Client(url) as client:

        async def op(step):
            kind = step["op"]
            if kind == "list_tools":
                return sorted(t.name for t in await client.list_tools())
            if kind == "list_resources":
                return sorted(str(r.uri) for r in await client.list_resources())
            if kind == "list_prompts":
                return sorted(p.name for p in await client.list_prompts())
            if kind == "read":
                return [dump(c) for c in await client.read_resource(step["uri"])]
            if kind == "prompt":
                return dump(await client.get_prompt(step["name"], step.get("args") or {}))
            if kind == "call":
                result = await client.call_tool(step["tool"], step.get("args", {}), raise_on_error=False)
                return {"content": [dump(c) for c in result.content], "isError": result.is_error}
            if kind == "progress":
                seen = []

                async def progress(p, total, message):
                    seen.append(p)

                result = await client.call_tool(
                    step["tool"], step.get("args", {}), progress_handler=progress, raise_on_error=False
                )
                return {"progress": seen, "content": [dump(c) for c in result.content]}
            if kind == "cancel":
                with anyio.move_on_after(step["after_ms"] / 1000):
                    await client.call_tool(step["tool"], step.get("args", {}))
                then = step["then"]
                result = await client.call_tool(then["tool"], then.get("args", {}))
                return {"after": [dump(c) for c in result.content]}
            raise ValueError(f"unknown op {kind}")

        await run_plan(plan, op)


anyio.run(main, sys.argv[1], json.loads(sys.argv[2]))
