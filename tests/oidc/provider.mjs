// A real OpenID Provider (panva/oidc-provider) for Sluice's end-to-end tests.
//
//   node provider.mjs --port 0 --keys FILE [--rotate] [--ready FILE]
//
// It issues JWT access tokens for the resource AUDIENCE (default
// urn:sluice:gateway) through the client-credentials grant (clients
// `agent-1`, and `short-lived` whose tokens last 1 s) and the device
// authorization grant (public client `sluice-cli`). Signing keys are RSA,
// kept in FILE so a restart keeps them; `--rotate` adds a new key first, so
// the provider signs with a key id nodes have never seen.
//
// Test-only routes: POST /test/approve {user_code, account} approves a
// pending device code as `account` (what a person would do in the browser);
// GET /test/stats counts key-set downloads.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    keys: { type: 'string' },
    rotate: { type: 'boolean', default: false },
    ready: { type: 'string' },
    audience: { type: 'string', default: 'urn:sluice:gateway' },
  },
});

const AUDIENCE = args.audience;
const GROUPS = { 'agent-1': ['agents'], 'short-lived': ['agents'], ada: ['dba', 'eng'] };

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

function loadKeys() {
  let keys = args.keys && existsSync(args.keys) ? JSON.parse(readFileSync(args.keys, 'utf8')).keys : [];
  if (keys.length === 0 || args.rotate) keys = [newKey(), ...keys];
  if (args.keys) writeFileSync(args.keys, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

const keys = loadKeys();
const stats = { jwks: 0 };

function start(port) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      { client_id: 'agent-1', client_secret: 'agent-1-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      { client_id: 'short-lived', client_secret: 'short-lived-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
      { client_id: 'sluice-cli', token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code'], redirect_uris: [], response_types: [] },
    ],
    jwks: { keys },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => ({
          scope: 'gateway',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: client.clientId === 'short-lived' ? 1 : 600,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => ({
      groups: GROUPS[token.accountId ?? token.clientId] ?? [],
    }),
  });
  provider.proxy = false;
  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') stats.jwks += 1;
    if (ctx.path === '/test/stats') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/test/approve' && ctx.method === 'POST') {
      ctx.body = await approve(provider, await jsonBody(ctx.req));
      return;
    }
    await next();
  });
  return provider;
}

async function jsonBody(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return JSON.parse(raw || '{}');
}

async function approve(provider, { user_code: userCode, account }) {
  const normalized = String(userCode).replace(/[^A-Za-z]/g, '').toUpperCase();
  const code = await provider.DeviceCode.findByUserCode(normalized);
  if (!code) return { approved: false };
  const grant = new provider.Grant({ accountId: account, clientId: code.clientId });
  grant.addOIDCScope('openid');
  grant.addResourceScope(AUDIENCE, 'gateway');
  Object.assign(code, {
    accountId: account,
    grantId: await grant.save(),
    authTime: Math.floor(Date.now() / 1000),
    scope: 'openid gateway',
    resource: AUDIENCE,
  });
  await code.save();
  return { approved: true };
}

// The issuer URL contains the port, so bind first, then build the provider.
import { createServer } from 'node:http';
const server = createServer();
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  const provider = start(port);
  server.on('request', provider.callback());
  const line = JSON.stringify({ issuer: `http://127.0.0.1:${port}`, port });
  if (args.ready) writeFileSync(args.ready, line);
  console.log(line);
});
process.on('SIGTERM', () => process.exit(0));
