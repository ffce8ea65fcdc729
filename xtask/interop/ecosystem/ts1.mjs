// The TypeScript SDK 1.x client (@modelcontextprotocol/sdk) running one plan of the
// ecosystem matrix (`cargo xtask ecosystem`); see plan.md beside this file.
//
// usage: node ts1.mjs URL PLAN_JSON [--via-mcp-remote MCP_REMOTE_JS]
// With --via-mcp-remote the client speaks stdio to mcp-remote, which speaks HTTP to URL.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { runPlan, handlers } from "./common.mjs";

const [url, planText, via, remote] = process.argv.slice(2);
const plan = JSON.parse(planText);
const client = new Client(
  { name: "hale-interop", version: "1" },
  { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
);
client.setRequestHandler(CreateMessageRequestSchema, handlers.sample);
client.setRequestHandler(ElicitRequestSchema, handlers.elicit);
client.setRequestHandler(ListRootsRequestSchema, handlers.roots);
const transport =
  via === "--via-mcp-remote"
    ? new StdioClientTransport({
        command: process.execPath,
        args: [remote, url, "--allow-http", "--transport", "http-only"],
        env: { ...process.env },
        stderr: "ignore",
      })
    : new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
await runPlan(plan, client);
await client.close();
process.exit(0);
