// Headless Chromium walks the embedded authorization server's pages: sign in, pick a
// patient, untick one scope on the consent page, follow the redirect to a loopback
// redirect URI served here, exchange the code, and check the unticked scope is absent.
//
// Run from tests/browser:  npm ci && node --test
// The fixture server is `cargo run -p fhirgate-authserver --example browser_fixture`
// (set FIXTURE_BIN to a prebuilt binary to skip cargo). Chromium: /usr/bin/chromium
// (override with CHROMIUM), never downloaded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const repoRoot = resolve(import.meta.dirname, '..', '..');

function startFixture() {
  const cmd = process.env.FIXTURE_BIN
    ? [process.env.FIXTURE_BIN, []]
    : ['cargo', ['run', '-q', '-p', 'fhirgate-authserver', '--example', 'browser_fixture']];
  const child = spawn(cmd[0], cmd[1], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const info = new Promise((ok, fail) => {
    lines.once('line', (line) => ok(JSON.parse(line)));
    child.once('exit', (code) => fail(new Error(`fixture exited with ${code}`)));
  });
  return { child, info };
}

function startCallbackServer() {
  const hits = [];
  const server = createServer((req, res) => {
    hits.push(new URL(req.url, 'http://127.0.0.1'));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('callback received');
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, hits, port: server.address().port })));
}

const b64url = (buf) => buf.toString('base64url');

test('login, pick a patient, untick a scope, and the token lacks it', { timeout: 600_000 }, async () => {
  const fixture = startFixture();
  const callback = await startCallbackServer();
  const profile = mkdtempSync(join(tmpdir(), 'fhirgate-chromium-'));
  let context;
  try {
    const info = await fixture.info;
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run',
      ],
    });
    const page = context.pages()[0] ?? (await context.newPage());

    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const state = b64url(randomBytes(16));
    const redirectUri = `http://127.0.0.1:${callback.port}/callback`;
    const scope = 'launch/patient openid fhirUser patient/Observation.rs patient/Condition.rs';
    const authorize = new URL(`${info.issuer}/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: info.client_id, redirect_uri: redirectUri, scope, state,
      aud: info.fhir_base, code_challenge: challenge, code_challenge_method: 'S256',
    })) authorize.searchParams.set(k, v);

    // Login page, reached through the authorize redirect.
    const first = await page.goto(authorize.toString());
    assert.equal(first.status(), 200);
    assert.equal(first.headers()['x-frame-options'], 'DENY');
    assert.match(first.headers()['content-security-policy'], /frame-ancestors 'none'/);
    await page.getByLabel('Username').fill(info.username);
    await page.getByLabel('Password').fill(info.password);
    await page.getByRole('button', { name: 'Sign in' }).click();

    // Patient picker: search, then choose.
    if (process.env.DEBUG_PAGES) console.error(page.url(), await page.content());
    await page.getByRole('heading', { name: 'Choose a patient' }).waitFor();
    await page.getByLabel('Search by name or id').fill('carl');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('Carl Jones').waitFor();
    assert.equal(await page.getByText('Alice Smith').count(), 0);
    await page.getByLabel(/Carl Jones/).check();
    await page.getByRole('button', { name: 'Continue' }).click();

    // Consent: every scope listed in plain language, each with its own checkbox.
    await page.getByRole('heading', { name: /Allow/ }).waitFor();
    const conditions = page.getByLabel('Read and search condition records for the selected patient');
    assert.equal(await conditions.isChecked(), true);
    await conditions.uncheck();
    assert.equal(await page.getByLabel('Read and search observation records for the selected patient').isChecked(), true);
    await page.getByRole('button', { name: 'Allow' }).click();

    await page.waitForURL((url) => url.port === String(callback.port));
    const callbacks = callback.hits.filter((u) => u.pathname === '/callback');
    assert.equal(callbacks.length, 1);
    const cb = callbacks[0];
    assert.equal(cb.searchParams.get('state'), state);
    const code = cb.searchParams.get('code');
    assert.ok(code, 'a code came back');

    const resp = await fetch(`${info.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code, redirect_uri: redirectUri,
        code_verifier: verifier, client_id: info.client_id,
      }),
    });
    assert.equal(resp.status, 200);
    assert.equal(resp.headers.get('cache-control'), 'no-store');
    const token = await resp.json();
    const granted = token.scope.split(' ');
    assert.ok(!granted.includes('patient/Condition.rs'), `unticked scope absent: ${token.scope}`);
    assert.ok(granted.includes('patient/Observation.rs'));
    assert.equal(token.patient, 'p2');
    const claims = JSON.parse(Buffer.from(token.access_token.split('.')[1], 'base64url'));
    assert.ok(!claims.scope.split(' ').includes('patient/Condition.rs'));
  } finally {
    await context?.close();
    callback.server.close();
    fixture.child.kill();
    rmSync(profile, { recursive: true, force: true });
  }
});
