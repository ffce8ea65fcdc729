// The TypeScript SDK 1.x client with an OAuthClientProvider (authorization code + PKCE,
// dynamic client registration, RFC 8707 resource) against an MCP server behind OAuth:
// `hale vmcp` with `incomingAuth: oidc` and npm oidc-provider as the authorization server.
//
// usage: node ts_oauth.mjs URL STATE_FILE STEP...
// STEP: `connect` (authorizing as needed), `list`, `call` (the first tool with
// no required arguments, or `echo`), `expire` (sleep past the access token's lifetime), `close`.
// The token store (client registration, tokens, code verifier) lives in STATE_FILE, so
// a later run goes on where this one stopped (after the server was restarted, say).
// env REFRESH=0: register without the refresh_token grant (tokens are then not refreshed:
// the SDK 1.x answers a 403 insufficient_scope by refreshing when it can, which keeps the
// old scope, so only such a client steps up).
// Prints one JSON object per step: {label, ok, value | error}, then a summary line
// {label: "flow", authorizations, tokens, refreshes}.
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { authorize } from './agent.mjs';

const [url, stateFile, ...steps] = process.argv.slice(2);
const REDIRECT = 'http://127.0.0.1:1/callback';
const state = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, 'utf8')) : {};
const counts = { authorizations: 0, tokens: 0, refreshes: 0 };
const save = () => fs.writeFileSync(stateFile, JSON.stringify(state));
const jar = new Map();
let pending = null;
let exchanging = false;

const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      client_name: 'hale interop (TypeScript SDK 1.x)',
      redirect_uris: [REDIRECT],
      grant_types: process.env.REFRESH === '0'
        ? ['authorization_code']
        : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation: () => state.client,
  saveClientInformation: (c) => { state.client = c; save(); },
  tokens: () => state.tokens,
  saveTokens: (t) => {
    if (state.tokens?.refresh_token && !exchanging) counts.refreshes++;
    counts.tokens++;
    state.tokens = t;
    save();
  },
  redirectToAuthorization: (u) => { counts.authorizations++; pending = u; },
  saveCodeVerifier: (v) => { state.verifier = v; save(); },
  codeVerifier: () => state.verifier,
  discoveryState: () => state.discovery,
  saveDiscoveryState: (d) => { state.discovery = d; save(); },
};

let client = null;
let transport = null;

async function connect() {
  for (let attempt = 0; attempt < 3; attempt++) {
    client = new Client({ name: 'hale-interop-ts-oauth', version: '1.0.0' });
    transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    try {
      await client.connect(transport);
      return { server: client.getServerVersion()?.name };
    } catch (e) {
      if (!(e instanceof UnauthorizedError) || !pending) throw e;
      // The scripted user goes through the authorization server and comes back with a code.
      const back = await authorize(pending, REDIRECT, jar);
      pending = null;
      if (!back.searchParams.get('code')) {
        throw new Error(`the authorization server sent no code: ${back.search}`);
      }
      exchanging = true;
      await transport.finishAuth(back.searchParams.get('code'));
      exchanging = false;
    }
  }
  throw new Error('still unauthorized after three authorizations');
}

async function run(step) {
  switch (step) {
    case 'connect': return connect();
    case 'list': return (await client.listTools()).tools.map((t) => t.name).sort();
    case 'call': {
      const tools = (await client.listTools()).tools;
      const echo = tools.find((t) => t.name.endsWith('echo'));
      const r = await client.callTool({ name: echo.name, arguments: { text: 'through oauth' } });
      return r.content?.[0]?.text ?? r;
    }
    case 'expire': {
      await new Promise((r) => setTimeout(r, Number(process.env.EXPIRE_MS ?? 7000)));
      return 'waited';
    }
    case 'close': await client.close(); return 'closed';
    default: throw new Error(`unknown step ${step}`);
  }
}

for (const step of steps) {
  try {
    console.log(JSON.stringify({ label: step, ok: true, value: await run(step) }));
  } catch (e) {
    console.log(JSON.stringify({ label: step, ok: false, error: String(e?.message ?? e) }));
    break;
  }
}
console.log(JSON.stringify({ label: 'flow', ...counts, scope: state.tokens?.scope ?? null }));
process.exit(0);
