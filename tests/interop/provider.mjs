// An external, certified OpenID provider (`oidc-provider` from npm) set up as a SMART
// token issuer for fhirgate. Started by the tests as a child process (so a restart with new
// keys is a real key rotation):
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json: { port, keys: [private JWKs; the first signs], fhirBase, otherResource,
//                opaqueResource, clients: [oidc-provider client metadata],
//                patients: { client_id: patient id } }
//
// Resource indicators (RFC 8707) decide what a token is:
//   fhirBase        → RS256 `at+jwt` access token, aud = fhirBase
//   opaqueResource  → opaque access token for aud = fhirBase, checked through introspection
//   otherResource   → RS256 `at+jwt` access token for another audience
// Scopes are SMART scopes; `extraTokenClaims` adds the `patient` claim for clients bound to a
// patient. Prints `oidc-provider ready at <issuer>` when listening.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${cfg.port}`;
const SCOPES = 'system/*.rs system/*.read patient/*.rs patient/*.read';

const resourceServers = {
  [cfg.fhirBase]: {
    scope: SCOPES, audience: cfg.fhirBase, accessTokenFormat: 'jwt', accessTokenTTL: 300,
    jwt: { sign: { alg: 'RS256' } },
  },
  [cfg.opaqueResource]: {
    scope: SCOPES, audience: cfg.fhirBase, accessTokenFormat: 'opaque', accessTokenTTL: 300,
  },
  [cfg.otherResource]: {
    scope: SCOPES, audience: cfg.otherResource, accessTokenFormat: 'jwt', accessTokenTTL: 300,
    jwt: { sign: { alg: 'RS256' } },
  },
};

const provider = new Provider(issuer, {
  clients: cfg.clients,
  jwks: { keys: cfg.keys },
  cookies: { keys: [randomUUID()] },
  ttl: { AccessToken: 300, ClientCredentials: 300 },
  scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Only the gateway's own client may introspect.
      allowedPolicy: async (ctx, client) => client.clientId === 'fhirgate',
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => cfg.fhirBase,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = resourceServers[resourceIndicator];
        if (!info) throw new errors.InvalidTarget();
        return info;
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const patient = cfg.patients?.[token.clientId];
    return patient ? { patient } : undefined;
  },
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

provider.listen(cfg.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
