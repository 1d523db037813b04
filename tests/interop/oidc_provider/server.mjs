// Test-only OAuth 2.0 authorization server for tokenguard's interop tests.
//
// Runs panva's certified `oidc-provider` on loopback plain HTTP:
//
//   node server.mjs [PORT] [HOST]     (PORT 0 or omitted = ephemeral port; HOST default 127.0.0.1)
//
// Once it accepts connections it prints exactly one line to stdout:
//
//   READY http://127.0.0.1:<port>
//
// and that URL is the issuer. Everything else (diagnostics) goes to stderr.
//
// Client secrets come from the environment (TOKENGUARD_INTEROP_*_SECRET) so that the
// pytest fixture can choose them; the fallbacks below are throwaway values for manual runs.
// Signing keys are generated fresh at every start, so nothing secret is committed.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const argPort = process.argv[2] ?? '0';
const host = process.argv[3] ?? '127.0.0.1';
const port = Number.parseInt(argPort, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535 || String(port) !== argPort.trim()) {
  process.stderr.write(`usage: node server.mjs [PORT] [HOST]; invalid port ${JSON.stringify(argPort)}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Static test fixtures
// ---------------------------------------------------------------------------------------------

const RESOURCE_JWT = 'urn:tokenguard:interop:jwt'; // JWT access tokens, RS256
const RESOURCE_JWT_ES256 = 'urn:tokenguard:interop:jwt-es256'; // JWT access tokens, ES256
const RESOURCE_OPAQUE = 'urn:tokenguard:interop:opaque'; // opaque access tokens
const SCOPES = 'orders:read orders:write';
const ACCESS_TOKEN_TTL = 300; // seconds

const RESOURCE_SERVERS = {
  [RESOURCE_JWT]: {
    scope: SCOPES,
    audience: RESOURCE_JWT,
    accessTokenTTL: ACCESS_TOKEN_TTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  },
  [RESOURCE_JWT_ES256]: {
    scope: SCOPES,
    audience: RESOURCE_JWT_ES256,
    accessTokenTTL: ACCESS_TOKEN_TTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  },
  [RESOURCE_OPAQUE]: {
    scope: SCOPES,
    audience: RESOURCE_OPAQUE,
    accessTokenTTL: ACCESS_TOKEN_TTL,
    accessTokenFormat: 'opaque',
  },
};

function secretFromEnv(name, fallback) {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

const CLIENTS = [
  {
    // The "application": obtains access tokens with the client_credentials grant.
    client_id: 'app-client',
    client_secret: secretFromEnv('TOKENGUARD_INTEROP_APP_SECRET', 'app-client-dev-secret'),
  },
  {
    // The resource server's own credentials, used to call the introspection endpoint.
    client_id: 'rs-client',
    client_secret: secretFromEnv('TOKENGUARD_INTEROP_RS_SECRET', 'rs-client-dev-secret'),
  },
  {
    // A resource-server client whose id and secret contain characters that RFC 6749 §2.3.1
    // requires to be form-urlencoded before they go into the Basic authorization header.
    client_id: 'rs-client:special',
    client_secret: secretFromEnv('TOKENGUARD_INTEROP_RS_SPECIAL_SECRET', 'p+s/w:o%r d&=?'),
  },
].map((client) => ({
  ...client,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: SCOPES,
}));

const INTROSPECTION_CLIENTS = new Set(['rs-client', 'rs-client:special']);

// ---------------------------------------------------------------------------------------------
// Keys: fresh per process
// ---------------------------------------------------------------------------------------------

function signingJwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk,
    kid: `tokenguard-interop-${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`,
    alg,
    use: 'sig',
  };
}

const jwks = {
  keys: [
    // The first key is the default for everything signed with RS256.
    signingJwk('rsa', { modulusLength: 2048 }, 'RS256'),
    signingJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  ],
};

// ---------------------------------------------------------------------------------------------
// Storage: a per-process in-memory adapter. oidc-provider's built-in one works too, but it
// announces itself on every start with a production warning; this one is explicit test code.
// ---------------------------------------------------------------------------------------------

const store = new Map(); // key -> { payload, expiresAt (ms epoch) | undefined }

function storeGet(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

function storeSet(key, payload, expiresIn) {
  const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
  store.set(key, { payload, expiresAt });
}

class InMemoryTestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    storeSet(this.key(id), { ...payload }, expiresIn);
    if (payload.grantId) {
      const grantKey = `grant-index:${payload.grantId}`;
      const members = storeGet(grantKey) ?? [];
      members.push(this.key(id));
      storeSet(grantKey, members, expiresIn);
    }
    if (payload.userCode) storeSet(`user-code:${payload.userCode}`, id, expiresIn);
    if (payload.uid) storeSet(`uid:${payload.uid}`, id, expiresIn);
  }

  async find(id) {
    const payload = storeGet(this.key(id));
    return payload === undefined ? undefined : { ...payload };
  }

  async findByUserCode(userCode) {
    const id = storeGet(`user-code:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUid(uid) {
    const id = storeGet(`uid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = storeGet(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000); // mutates the stored entry
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant-index:${grantId}`;
    for (const key of storeGet(grantKey) ?? []) store.delete(key);
    store.delete(grantKey);
  }
}

// ---------------------------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------------------------

const server = http.createServer();

server.on('error', (err) => {
  process.stderr.write(`oidc-provider interop server failed: ${err.stack ?? err}\n`);
  process.exit(1);
});

server.listen(port, host, () => {
  const { port: actualPort } = server.address();
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  const issuer = `http://${hostForUrl}:${actualPort}`;

  const provider = new Provider(issuer, {
    adapter: InMemoryTestAdapter,
    clients: CLIENTS,
    jwks,
    scopes: ['openid', ...SCOPES.split(' ')],
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // No end-user login in this harness; keep the dev-only interaction UI off.
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 9449: on by default in oidc-provider 9; explicit here because the tests rely on
      // it. A token request with a DPoP proof gets a DPoP-bound access token (cnf.jkt).
      dPoP: { enabled: true },
      // RFC 9701: an introspection request that asks for application/token-introspection+jwt
      // gets a JWT signed with the server's key (every client: RS256 unless registered
      // otherwise); a plain request still gets JSON.
      jwtIntrospection: { enabled: true },
      introspection: {
        enabled: true,
        // The resource-server clients may introspect any token; every client may introspect
        // its own tokens.
        allowedPolicy(ctx, client, token) {
          return INTROSPECTION_CLIENTS.has(client.clientId) || token.clientId === client.clientId;
        },
      },
      revocation: {
        enabled: true,
        // Only the client the token was issued to may revoke it (oidc-provider's default
        // semantics, without its "please change this" notice).
        allowedPolicy(ctx, client, token) {
          if (token.clientId !== client.clientId) {
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource(ctx, client, oneOf) {
          return oneOf;
        },
        useGrantedResource() {
          return false;
        },
        getResourceServerInfo(ctx, resourceIndicator) {
          const info = RESOURCE_SERVERS[resourceIndicator];
          if (!info) {
            throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
          }
          return structuredClone(info);
        },
      },
    },
    ttl: {
      ClientCredentials: ACCESS_TOKEN_TTL,
    },
  });

  for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (...args) => {
      const err = args.find((arg) => arg instanceof Error);
      const detail = err ? `${err.name}: ${err.message} ${err.error_description ?? ''}` : '';
      process.stderr.write(`[oidc-provider] ${event} ${detail}\n`);
    });
  }

  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  process.stderr.write(`oidc-provider interop server: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
