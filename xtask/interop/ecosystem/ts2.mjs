// The TypeScript SDK 2.x client (@modelcontextprotocol/client) running one plan of the
// ecosystem matrix (`cargo xtask ecosystem`); see plan.md beside this file.
//
// usage: node ts2.mjs URL MODE PLAN_JSON   (MODE: auto or legacy)
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { runPlan, handlers } from "./common.mjs";

const [url, mode, planText] = process.argv.slice(2);
const plan = JSON.parse(planText);
const client = new Client(
  { name: "hale-interop", version: "1" },
  {
    capabilities: { sampling: {}, elicitation: {}, roots: {} },
    versionNegotiation: { mode },
  },
);
client.setRequestHandler("sampling/createMessage", handlers.sample);
client.setRequestHandler("elicitation/create", handlers.elicit);
client.setRequestHandler("roots/list", handlers.roots);
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
await runPlan(plan, client);
await client.close();
process.exit(0);
