"""The official Python SDK client (mcp 2.x), traced: inside a span of its own (an
agent's step), it calls `echo` through URL; the SDK puts the trace context in the
request's `_meta`. Exports its spans as `python-client`.

usage: python client.py URL COLLECTOR TOOL   (COLLECTOR `none`: not traced)
Prints one JSON object: {"trace_id", "span_id" (the step's), "answer" (the tool's text,
parsed), "error"}.
"""

import json
import sys

import anyio
from common import export_to
from mcp import Client
from opentelemetry import trace


async def main(url: str, collector: str, tool: str) -> None:
    provider = export_to(collector, "python-client") if collector != "none" else None
    tracer = trace.get_tracer("hale-interop")
    out = {"trace_id": None, "span_id": None, "answer": None, "error": None}
    with tracer.start_as_current_span("agent step") as step:
        context = step.get_span_context()
        out["trace_id"] = format(context.trace_id, "032x")
        out["span_id"] = format(context.span_id, "016x")
        try:
            async with Client(url) as client:
                result = await client.call_tool(tool, {"text": "traced"})
                text = result.content[0].text
                try:
                    out["answer"] = json.loads(text)
                except ValueError:
                    out["answer"] = text
        except Exception as e:  # noqa: BLE001 - reported, not raised
            while isinstance(e, BaseExceptionGroup) and e.exceptions:
                e = e.exceptions[0]
            out["error"] = f"{type(e).__name__}: {e}"
    if provider is not None:
        provider.force_flush()
    print(json.dumps(out))


anyio.run(main, *sys.argv[1:4])
