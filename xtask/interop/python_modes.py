"""The official Python SDK client (mcp 2.x) in one connection mode, for hale's interop
checks: connect, list tools, call one, and, in a modern mode, hold a
subscriptions/listen stream until told to stop.

usage: python python_modes.py URL MODE TOOL [listen]

MODE is auto, legacy or 2026-07-28. Prints one JSON object per line on stdout:
  {"protocol": version, "tools": [names], "call": text or null, "error": message or null}
and with `listen`, then:
  {"listening": honoured filter}       once the acknowledgement arrived
  {"event": type name}                 for every event, as it arrives
  {"ended": reason}                    when the stream ends
The listen loop ends on end of stdin.
"""

import json
import sys

import anyio
from mcp import Client


def say(obj):
    print(json.dumps(obj, default=str), flush=True)


async def main(url, mode, tool, listen):
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        names = [t.name for t in tools.tools]
        text, error = None, None
        try:
            result = await client.call_tool(tool, {"text": "interop"})
            if result.is_error:
                error = " ".join(getattr(c, "text", "") for c in result.content)
            else:
                text = " ".join(getattr(c, "text", "") for c in result.content)
        except Exception as e:  # noqa: BLE001 - reported, judged by the caller
            error = f"{type(e).__name__}: {e}"
        say({"protocol": client.protocol_version, "tools": names, "call": text, "error": error})
        if not listen:
            return
        async with client.listen(tools_list_changed=True) as sub:
            say({"listening": str(getattr(sub, "honored", ""))})
            async with anyio.create_task_group() as tg:

                async def stop_on_eof():
                    await anyio.to_thread.run_sync(sys.stdin.read)
                    tg.cancel_scope.cancel()

                tg.start_soon(stop_on_eof)
                try:
                    async for event in sub:
                        say({"event": type(event).__name__})
                    say({"ended": "graceful"})
                except Exception as e:  # noqa: BLE001
                    say({"ended": f"{type(e).__name__}: {e}"})
                tg.cancel_scope.cancel()


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, args[0], args[1], args[2], len(args) > 3 and args[3] == "listen")
