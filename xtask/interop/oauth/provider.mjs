// A real OAuth 2.1 authorization server for the OAuth interop checks: npm `oidc-provider`
// 8 with dynamic client registration, PKCE S256, RFC 8707 resource indicators issuing JWT
// access tokens whose `aud` is the resource the client named, and refresh tokens.
// Login and consent are scripted: every authorization is approved for ACCOUNT (default
// alice), granting what the client asked. Pre-registered public client `browser-page`
// (for a single-page app, which cannot register: the registration endpoint has no CORS)
// with the redirect URIs in BROWSER_REDIRECTS (comma-separated).
//
// usage: node provider.mjs PORT   (0: any free port)   prints `issuer URL` when ready;
// env ACCESS_TOKEN_TTL (seconds, default 60) for clients that can refresh.
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? 0);
const ttl = Number(process.env.ACCESS_TOKEN_TTL ?? 60);
const account = process.env.ACCOUNT ?? 'alice';

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-1', use: 'sig', alg: 'RS256' };

const redirects = (process.env.BROWSER_REDIRECTS ?? '').split(',').filter(Boolean);
const provider = new Provider(issuer, {
  jwks: { keys: [key] },
  clients: redirects.length
    ? [{
        client_id: 'browser-page',
        redirect_uris: redirects,
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      }]
    : [],
  scopes: ['openid', 'offline_access', 'mcp:call', 'mcp:write'],
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      // Clients that can refresh get ACCESS_TOKEN_TTL (short, so that a check can see
      // a token expire); those that cannot get 300 s.
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'mcp:call mcp:write',
        audience: resource,
        accessTokenTTL: client?.grantTypeAllowed('refresh_token') ? ttl : 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  clientBasedCORS: () => true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: ttl, Grant: 3600, Interaction: 600, Session: 3600 },
  cookies: { keys: ['interop-cookie-key'] },
});

// A registration's `scope` is not kept as a limit on what the client may ask later (many
// authorization servers do not limit dynamic clients so; oidc-provider would refuse a
// step-up's larger scope with invalid_scope).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/reg') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    delete body.scope;
    ctx.req.body = body;
  }
  return next();
});

// The scripted user: logs in as ACCOUNT and consents to what the client asked.
provider.use(async (ctx, next) => {
  if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: account } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
    console.error(`consent client=${params.client_id} scope=${params.scope ?? ''} resource=${params.resource ?? ''}`);
  }
  ctx.respond = false;
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});
provider.on('grant.success', (ctx) => {
  console.error(`token grant=${ctx.oidc.params.grant_type} client=${ctx.oidc.client?.clientId}`);
});
provider.on('server_error', (ctx, err) => console.error(`server_error ${err.stack}`));

server.on('request', provider.callback());
console.log(`issuer ${issuer}`);
