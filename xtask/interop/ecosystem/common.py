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
