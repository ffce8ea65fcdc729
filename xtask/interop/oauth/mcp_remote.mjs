// mcp-remote (a stdio bridge to a remote MCP server, with OAuth) driven by the TypeScript
// SDK's stdio client: mcp-remote registers itself, prints the authorization URL (no
// browser here), the scripted user follows it and is sent back to mcp-remote's callback,
// mcp-remote gets its token and connects; then the client lists and calls through it.
//
// usage: node mcp_remote.mjs URL CALLBACK_PORT CONFIG_DIR
// Prints one JSON object per step: {label, ok, value | error}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { createRequire } from 'node:module';
import path from 'node:path';
import { authorize } from './agent.mjs';

const [url, callbackPort, configDir] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const bin = path.join(path.dirname(require.resolve('mcp-remote/package.json')), 'dist/proxy.js');
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [bin, url, callbackPort, '--allow-http', '--transport', 'http-only'],
  env: { ...process.env, MCP_REMOTE_CONFIG_DIR: configDir },
  stderr: 'pipe',
});
let log = '';
let authorized = null;
transport.stderr.on('data', (chunk) => {
  log += chunk.toString();
  const m = log.match(/Please authorize this client by visiting:\s*(\S+)/);
  if (m && !authorized) {
    authorized = authorize(m[1], `http://localhost:${callbackPort}/`).then(async (back) => {
      // mcp-remote's own callback server takes the code.
      const r = await fetch(back);
      await r.text();
      return r.status;
    });
    authorized.catch((e) => { log += `\nauthorization failed: ${e.message}`; });
  }
});

const client = new Client({ name: 'hale-interop-mcp-remote', version: '1.0.0' });
const steps = [
  ['connect', async () => {
    await client.connect(transport);
    return { server: client.getServerVersion()?.name, authorized: authorized ? await authorized : null };
  }],
  ['list', async () => (await client.listTools()).tools.map((t) => t.name).sort()],
  ['call', async () => {
    const echo = (await client.listTools()).tools.find((t) => t.name.endsWith('echo'));
    const r = await client.callTool({ name: echo.name, arguments: { text: 'through mcp-remote' } });
    return r.content?.[0]?.text ?? r;
  }],
];
const timer = setTimeout(() => {
  console.log(JSON.stringify({ label: 'timeout', ok: false, error: log.slice(-1500) }));
  process.exit(0);
}, 45000);
for (const [label, step] of steps) {
  try {
    console.log(JSON.stringify({ label, ok: true, value: await step() }));
  } catch (e) {
    console.log(JSON.stringify({ label, ok: false, error: `${e?.message ?? e}; mcp-remote said: ${log.slice(-1500)}` }));
    break;
  }
}
clearTimeout(timer);
await client.close().catch(() => {});
process.exit(0);
