"""The official Python SDK client (mcp 2.x) finding its way to a token by itself: from
the 401's resource_metadata (RFC 9728) to the authorization server's metadata, then the
client credentials grant with the RFC 8707 resource, then the MCP calls with the token.

usage: python python_oauth.py URL ISSUER CLIENT_ID CLIENT_SECRET SCOPE MODE

Prints one JSON object: {"tools": [names], "call": text or null, "error": message or null}
"""

import json
import sys

import anyio
from interop_common import failure
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


async def main(url, issuer, client_id, secret, scope, mode):
    out = {"tools": [], "call": None, "error": None}
    provider = ClientCredentialsOAuthProvider(
        server_url=url, storage=Memory(), client_id=client_id, client_secret=secret,
        scope=scope, issuer=issuer,
    )
    try:
        async with create_mcp_http_client(auth=provider) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                tools = await client.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                result = await client.call_tool("echo", {"text": "found its own token"})
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["error" if result.is_error else "call"] = text
    except BaseException as e:  # noqa: BLE001 - reported, judged by the caller
        out["error"] = failure(e)
    print(json.dumps(out), flush=True)


anyio.run(main, *sys.argv[1:7])
