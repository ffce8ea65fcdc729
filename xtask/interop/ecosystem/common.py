"""What the Python drivers of the ecosystem matrix share."""

import json


def dump(result):
    """A result as the JSON the client hands its user (pydantic models dumped by alias)."""
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result


def failure(e):
    """An exception as one line, the first inner one of (nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


async def run_plan(plan, op):
    """Runs each step with `op`, printing one JSON line per step:
    {"op": ..., "label": ..., "ok": true, "value": ...} or {"ok": false, "error": ...}."""
    for step in plan:
        line = {"label": step.get("label", step["op"])}
        try:
            line["value"] = await op(step)
            line["ok"] = True
        except BaseException as e:  # noqa: BLE001 - reported, compared by the caller
            line["ok"] = False
            line["error"] = failure(e)
        print(json.dumps(line, sort_keys=True), flush=True)


def sdk_op(client, anyio):
    """The plan's steps over an official Python SDK client (1.x `ClientSession` or 2.x
    `Client`: the same methods)."""

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

            result = await client.call_tool(step["tool"], step.get("args", {}), progress_callback=progress)
            # Every notification that belongs to the call must come before its result.
            return {"progress": seen, "result": dump(result)}
        if kind == "cancel":
            with anyio.move_on_after(step["after_ms"] / 1000):
                await client.call_tool(step["tool"], step.get("args", {}))
            then = step["then"]
            return {"after": dump(await client.call_tool(then["tool"], then.get("args", {})))}
        raise ValueError(f"unknown op {kind}")

    return op
