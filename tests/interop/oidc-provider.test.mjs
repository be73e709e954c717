// fhirgate with an external, certified OpenID provider (`oidc-provider` from npm) as its
// only token issuer: `fhirgate store serve` (a few generated patients) behind
// `fhirgate serve --config <generated YAML>` whose `auth.issuers` names the provider. The
// gateway finds the provider's keys through its discovery document and JWKS, like any IdP.
//
// Checked: the provider's JWT access tokens (client_credentials, resource indicator = the FHIR
// base) are accepted and their SMART scopes and `patient` claim enforced; a token for another
// audience, a tampered token, no token → 401; opaque tokens go through the provider's RFC 7662
// introspection endpoint (the gateway authenticates as client `fhirgate`); after the provider
// restarts with a new signing key, tokens signed with it are accepted (the gateway refetches
// the JWKS on the unknown `kid`) and older tokens still verify while their key is published.
//
// Run from tests/interop:  npm ci && node --test
// The binary: $FHIRGATE_BIN, else $FHIRGATE_TARGET_DIR (or $CARGO_TARGET_DIR, or
// <repo>/target)/debug/fhirgate.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const here = import.meta.dirname;
const repoRoot = resolve(here, '..', '..');

function fhirgateBin() {
  if (process.env.FHIRGATE_BIN) return process.env.FHIRGATE_BIN;
  const targetDir = process.env.FHIRGATE_TARGET_DIR ?? process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target');
  const bin = join(targetDir, 'debug', 'fhirgate');
  if (!existsSync(bin)) {
    const built = spawnSync('cargo', ['build', '-q', '-p', 'fhirgate'], {
      cwd: repoRoot, stdio: 'inherit', env: { ...process.env, CARGO_TARGET_DIR: targetDir },
    });
    if (built.status !== 0) throw new Error(`cargo build -p fhirgate failed (${built.status})`);
  }
  return bin;
}

/** A free loopback port: bind port 0, read it, close. */
function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const children = new Set();

/** Spawns a process and resolves once a line on stdout or stderr matches `ready`. */
function startProcess(name, cmd, args, ready, env = {}) {
  const child = spawn(cmd, args, {
    cwd: here, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
  });
  children.add(child);
  const output = [];
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    children.delete(child);
  };
  const matched = new Promise((ok, fail) => {
    const onLine = (line) => {
      output.push(line);
      if (process.env.DEBUG_INTEROP) console.error(`[${name}]`, line);
      // Log lines may carry ANSI colour codes.
      const m = line.replace(/\x1b\[[0-9;]*m/g, '').match(ready);
      if (m) ok(m);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.once('exit', (code) => fail(new Error(`${name} exited with ${code}:\n${output.join('\n')}`)));
    setTimeout(() => fail(new Error(`${name} not ready after 60 s:\n${output.join('\n')}`)), 60_000).unref();
  });
  return { child, output, stop, ready: matched };
}

function rsaJwk(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

const INTROSPECTION_SECRET = `introspect-${randomUUID()}`;
const SYSTEM_SECRET = `system-${randomUUID()}`;
const PATIENT_SECRET = `patient-${randomUUID()}`;
const PATIENT = 'pat-0';
const OTHER_PATIENT = 'pat-1';

let dir;
let store;
let provider;
let gateway;
let opPort;
let fhirBase;
let providerConfig;
let firstKey;
let storeBaseUrl;
let spare;

async function startProvider(keys) {
  const file = join(dir, `provider-${keys[0].kid}.json`);
  writeFileSync(file, JSON.stringify({ ...providerConfig, keys }));
  const p = startProcess('oidc-provider', process.execPath, [join(here, 'provider.mjs'), file],
    /oidc-provider ready at (\S+)/);
  await p.ready;
  return p;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fhirgate-interop-'));
  const bin = fhirgateBin();
  const db = join(dir, 'store.sqlite');
  const gen = spawnSync(bin, ['data', 'generate', '--patients', '3', '--seed', '1', '--db', db], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);

  store = startProcess('store', bin, ['store', 'serve', '--db', db, '--listen', '127.0.0.1:0'],
    /FHIR base (http:\/\/\S+)/);
  storeBaseUrl = (await store.ready)[1];

  opPort = await freePort();
  const gwPort = await freePort();
  fhirBase = `http://127.0.0.1:${gwPort}/fhir`;
  providerConfig = {
    port: opPort,
    fhirBase,
    opaqueResource: 'urn:fhirgate:test:opaque',
    otherResource: 'https://other.example.org/fhir',
    clients: [
      { client_id: 'system-client', client_secret: SYSTEM_SECRET, grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [] },
      { client_id: 'patient-client', client_secret: PATIENT_SECRET, grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [] },
      { client_id: 'fhirgate', client_secret: INTROSPECTION_SECRET, grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [] },
    ],
    patients: { 'patient-client': PATIENT },
  };
  firstKey = rsaJwk('key-1');
  provider = await startProvider([firstKey]);

  gateway = await startGateway(gwPort);
});

/** `fhirgate serve` on `port` with the provider as its only issuer; tokens for `fhirBase`. */
async function startGateway(port) {
  const issuer = `http://127.0.0.1:${opPort}`;
  const config = join(dir, `fhirgate-${port}.yaml`);
  writeFileSync(config, [
    `listen: 127.0.0.1:${port}`,
    `public_base_url: http://127.0.0.1:${port}/fhir`,
    'upstream:',
    `  url: ${storeBaseUrl}`,
    'auth:',
    '  issuers:',
    `    - issuer: ${issuer}`,
    `      audiences: [${fhirBase}]`,
    '      algorithms: [RS256]',
    '      required_typ: at+jwt',
    '      introspection:',
    `        endpoint: ${issuer}/token/introspection`,
    '        client_id: fhirgate',
    '        client_secret_env: FHIRGATE_TEST_INTROSPECTION_SECRET',
    '',
  ].join('\n'));
  const g = startProcess(`gateway:${port}`, fhirgateBin(), ['serve', '--config', config], /listening on (http:\/\/\S+)/,
    { FHIRGATE_TEST_INTROSPECTION_SECRET: INTROSPECTION_SECRET });
  await g.ready;
  return g;
}

after(async () => {
  for (const p of [spare, gateway, provider, store]) await p?.stop();
  for (const child of children) child.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** client_credentials at the provider; returns the token response. */
async function token(clientId, secret, scope, resource) {
  const body = new URLSearchParams({ grant_type: 'client_credentials', scope });
  if (resource) body.set('resource', resource);
  const resp = await fetch(`http://127.0.0.1:${opPort}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
    },
    body,
  });
  const json = await resp.json();
  assert.equal(resp.status, 200, JSON.stringify(json));
  return json;
}

const systemToken = (resource = fhirBase) => token('system-client', SYSTEM_SECRET, 'system/*.rs', resource);
const patientToken = (resource = fhirBase) => token('patient-client', PATIENT_SECRET, 'patient/*.rs', resource);

async function get(path, accessToken, base = fhirBase) {
  const headers = { accept: 'application/fhir+json' };
  if (accessToken) headers.authorization = `Bearer ${accessToken}`;
  const resp = await fetch(`${base}/${path}`, { headers });
  const text = await resp.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: resp.status, headers: resp.headers, body };
}

const jose = (jwt) => jwt.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));

test('a JWT access token from oidc-provider (system scope) reads through the gateway', async () => {
  const t = await systemToken();
  const [header, claims] = jose(t.access_token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(header.alg, 'RS256');
  assert.equal(header.kid, 'key-1');
  assert.equal(claims.aud, fhirBase);
  assert.equal(claims.scope, 'system/*.rs');

  const r = await get('Patient?_count=10', t.access_token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.resourceType, 'Bundle');
  assert.equal(r.body.entry.length, 3);
  const one = await get(`Patient/${OTHER_PATIENT}`, t.access_token);
  assert.equal(one.status, 200);
  assert.equal(one.body.id, OTHER_PATIENT);
});

test('the patient claim added by extraTokenClaims confines a patient/ scope to that patient', async () => {
  const t = await patientToken();
  assert.equal(jose(t.access_token)[1].patient, PATIENT);

  const own = await get(`Patient/${PATIENT}`, t.access_token);
  assert.equal(own.status, 200, JSON.stringify(own.body));
  assert.equal(own.body.id, PATIENT);

  const other = await get(`Patient/${OTHER_PATIENT}`, t.access_token);
  assert.equal(other.status, 403, JSON.stringify(other.body));
  assert.equal(other.body.resourceType, 'OperationOutcome');
  assert.equal(other.body.issue[0].code, 'forbidden');

  const obs = await get('Observation?_count=50', t.access_token);
  assert.equal(obs.status, 200, JSON.stringify(obs.body));
  assert.ok(obs.body.entry.length > 0);
  for (const e of obs.body.entry) assert.equal(e.resource.subject.reference, `Patient/${PATIENT}`);

  // Scopes are enforced too: patient/*.rs grants no writes.
  const resp = await fetch(`${fhirBase}/Patient/${PATIENT}`, {
    method: 'DELETE', headers: { authorization: `Bearer ${t.access_token}` },
  });
  assert.equal(resp.status, 403);
});

test('no token, a token for another audience, and tampered tokens are refused with 401', async () => {
  const none = await get('Patient?_count=1');
  assert.equal(none.status, 401);
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);

  const other = await systemToken(providerConfig.otherResource);
  assert.equal(jose(other.access_token)[1].aud, providerConfig.otherResource);
  const r1 = await get('Patient?_count=1', other.access_token);
  assert.equal(r1.status, 401, JSON.stringify(r1.body));
  assert.equal(r1.body.resourceType, 'OperationOutcome');

  // A patient token whose `patient` claim is changed to another patient: signature fails.
  const t = await patientToken();
  const [h, c, s] = t.access_token.split('.');
  const claims = JSON.parse(Buffer.from(c, 'base64url'));
  claims.patient = OTHER_PATIENT;
  const forged = [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
  const r2 = await get(`Patient/${OTHER_PATIENT}`, forged);
  assert.equal(r2.status, 401, JSON.stringify(r2.body));

  // The same claims unsigned (alg none).
  const none2 = [Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url'),
    Buffer.from(JSON.stringify(claims)).toString('base64url'), ''].join('.');
  const r3 = await get(`Patient/${OTHER_PATIENT}`, none2);
  assert.equal(r3.status, 401, JSON.stringify(r3.body));

  // A flipped bit in the signature.
  const sig = Buffer.from(s, 'base64url');
  sig[10] ^= 1;
  const r4 = await get(`Patient/${PATIENT}`, [h, c, sig.toString('base64url')].join('.'));
  assert.equal(r4.status, 401, JSON.stringify(r4.body));
});

test('opaque access tokens are checked through the provider\'s introspection endpoint', async () => {
  const sys = await systemToken(providerConfig.opaqueResource);
  assert.equal(sys.access_token.split('.').length, 1, `opaque: ${sys.access_token}`);
  const r = await get('Patient?_count=10', sys.access_token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.entry.length, 3);

  // The patient context comes from the introspection response.
  const pat = await patientToken(providerConfig.opaqueResource);
  const own = await get(`Patient/${PATIENT}`, pat.access_token);
  assert.equal(own.status, 200, JSON.stringify(own.body));
  const other = await get(`Patient/${OTHER_PATIENT}`, pat.access_token);
  assert.equal(other.status, 403, JSON.stringify(other.body));

  // An opaque string the provider never issued is inactive → 401.
  const bogus = await get('Patient?_count=1', `${sys.access_token.slice(0, -4)}AAAA`);
  assert.equal(bogus.status, 401, JSON.stringify(bogus.body));
});

test('after the provider rotates to a new signing key, its new tokens are accepted', async () => {
  const before = await systemToken();
  assert.equal(jose(before.access_token)[0].kid, 'key-1');
  assert.equal((await get('Patient?_count=1', before.access_token)).status, 200);

  // Restart the provider with a new first (signing) key; the old one stays published.
  await provider.stop();
  provider = await startProvider([rsaJwk('key-2'), firstKey]);

  const rotated = await systemToken();
  assert.equal(jose(rotated.access_token)[0].kid, 'key-2');
  const r = await get('Patient?_count=1', rotated.access_token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // Tokens signed with the previous key keep working while it is published.
  assert.equal((await get('Patient?_count=1', before.access_token)).status, 200);
});

test('while the provider is down, tokens signed with cached keys still work; an unknown kid answers 503', async () => {
  // A second gateway (same issuer and audience) that has never refetched for an unknown kid,
  // so its refetch below is not rate-limited by the rotation test's.
  const sparePort = await freePort();
  spare = await startGateway(sparePort);
  const spareBase = `http://127.0.0.1:${sparePort}/fhir`;
  const t = await systemToken();
  assert.equal((await get('Patient?_count=1', t.access_token, spareBase)).status, 200);
  await provider.stop();

  assert.equal((await get('Patient?_count=1', t.access_token, spareBase)).status, 200);

  // A well-formed token for this gateway signed with a key it has never seen: it cannot be
  // checked while the key set cannot be fetched → 503 transient with Retry-After, not 401.
  const key = rsaJwk('key-never-published');
  const now = Math.floor(Date.now() / 1000);
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'RS256', typ: 'at+jwt', kid: key.kid })}.${enc({
    iss: `http://127.0.0.1:${opPort}`, aud: fhirBase, sub: 'system-client', client_id: 'system-client',
    scope: 'system/*.rs', iat: now, exp: now + 300, jti: randomUUID(),
  })}`;
  const signature = sign('RSA-SHA256', Buffer.from(input), createPrivateKey({ key, format: 'jwk' }));
  const r = await get('Patient?_count=1', `${input}.${signature.toString('base64url')}`, spareBase);
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.issue[0].code, 'transient');
  assert.ok(r.headers.get('retry-after'), 'Retry-After is set');
});
