// A single-page app using the TypeScript SDK 1.x client in the browser: it connects to the
// MCP server named by `?mcp=` with an OAuthClientProvider (pre-registered public client
// `browser-page`, PKCE, RFC 8707 resource). Unauthorized, it goes to the authorization
// server; sent back with `?code=`, it finishes the flow, connects, lists and calls `echo`,
// and writes {ok, tools, call, session} (or {ok: false, error}) into #result.
// Bundled for the browser by browser.mjs (esbuild).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const params = new URLSearchParams(location.search);
if (params.get('mcp')) sessionStorage.setItem('mcp', params.get('mcp'));
const mcpUrl = sessionStorage.getItem('mcp');
const redirect = location.origin + location.pathname;
const load = (k) => JSON.parse(sessionStorage.getItem(k) ?? 'null') ?? undefined;
const keep = (k, v) => sessionStorage.setItem(k, JSON.stringify(v));

const provider = {
  get redirectUrl() { return redirect; },
  get clientMetadata() {
    return {
      client_name: 'hale interop browser page',
      redirect_uris: [redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation: () => ({ client_id: 'browser-page' }),
  tokens: () => load('tokens'),
  saveTokens: (t) => keep('tokens', t),
  redirectToAuthorization: (u) => { location.href = u.href; },
  saveCodeVerifier: (v) => keep('verifier', v),
  codeVerifier: () => load('verifier'),
  discoveryState: () => load('discovery'),
  saveDiscoveryState: (d) => keep('discovery', d),
};

const show = (value) => { document.getElementById('result').textContent = JSON.stringify(value); };

async function main() {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const code = params.get('code');
  if (code) {
    await transport.finishAuth(code);
    history.replaceState(null, '', redirect);
  }
  const client = new Client({ name: 'hale-interop-browser', version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (e) {
    if (e instanceof UnauthorizedError && !code) return; // on its way to the authorization server
    throw e;
  }
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const echo = tools.find((n) => n.endsWith('echo'));
  const r = await client.callTool({ name: echo, arguments: { text: 'from a browser' } });
  show({ ok: true, tools, call: r.content?.[0]?.text ?? null, session: transport.sessionId ?? null });
  await client.close();
}

main().catch((e) => show({ ok: false, error: String(e?.message ?? e) }));
