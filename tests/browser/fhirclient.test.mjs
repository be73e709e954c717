// The official SMART JavaScript client (`fhirclient` from npm, its browser bundle
// build/fhir-client.js) in headless Chromium against the real `fhirgate demo`:
// FHIR.oauth2.authorize (discovery, PKCE S256, state) → the embedded authorization
// server's login and consent pages → FHIR.oauth2.ready (code exchange) → client.patient.read()
// and client.request('Observation?patient=…') through the gateway; the test page writes
// what it got into the DOM and the test compares it with the store's content.
//
// The test page is a public client registered with `fhirgate auth client add` while the demo
// runs. It is served two ways:
//  - same origin as the gateway (Playwright answers the page's own URLs under /fhirclient-test/
//    on the demo's origin; every other request goes to fhirgate untouched), like an app hosted
//    next to its FHIR server;
//  - from its own loopback port, the usual case for a SMART app. That needs CORS on the token
//    endpoint and on the FHIR API (SMART App Launch 2.x: registered origins).
//
// Run from tests/browser:  npm ci && node --test fhirclient.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  startDemo, launchChromium, signIn, allowAll, fhirGet, humanName, fhirgate,
} from './fhirgate-demo.mjs';

const SCOPE = 'launch/patient openid fhirUser patient/*.rs';
const bundle = readFileSync(join(import.meta.dirname, 'node_modules', 'fhirclient', 'build', 'fhir-client.js'));

// launch.html?iss=…&client_id=… starts the launch; index.html is the redirect URI.
const LAUNCH_HTML = `<!doctype html><meta charset="utf-8"><title>launch</title>
<script src="fhir-client.js"></script>
<p id="status">authorizing…</p>
<script>
  const q = new URLSearchParams(location.search);
  FHIR.oauth2.authorize({
    clientId: q.get('client_id'),
    scope: q.get('scope'),
    iss: q.get('iss'),
    redirectUri: new URL('index.html', location.href).href,
    pkceMode: 'required',
  }).catch((e) => { document.getElementById('status').textContent = 'authorize failed: ' + e.message; });
</script>`;

const INDEX_HTML = `<!doctype html><meta charset="utf-8"><title>fhirclient result</title>
<script src="fhir-client.js"></script>
<dl>
  <dt>patient id</dt><dd id="patient-id"></dd>
  <dt>patient name</dt><dd id="patient-name"></dd>
  <dt>observations</dt><dd id="obs-count"></dd>
  <dt>observation subjects</dt><dd id="obs-subjects"></dd>
  <dt>granted scope</dt><dd id="scope"></dd>
  <dt>fhirUser</dt><dd id="fhir-user"></dd>
</dl>
<p id="error"></p>
<p id="done" hidden>done</p>
<script>
  const $ = (id) => document.getElementById(id);
  FHIR.oauth2.ready().then(async (client) => {
    $('scope').textContent = client.state.tokenResponse.scope;
    $('fhir-user').textContent = client.user.fhirUser || '';
    const patient = await client.patient.read();
    $('patient-id').textContent = patient.id;
    const name = (patient.name || [])[0] || {};
    $('patient-name').textContent = [...(name.given || []), name.family].join(' ');
    const bundle = await client.request('Observation?patient=' + encodeURIComponent(client.patient.id) + '&_count=50');
    const entries = bundle.entry || [];
    $('obs-count').textContent = String(entries.length);
    $('obs-subjects').textContent = [...new Set(entries.map((e) => e.resource.subject.reference))].join(',');
  }).catch((e) => { $('error').textContent = String(e && e.message || e); })
    .finally(() => { $('done').hidden = false; });
</script>`;

const FILES = {
  'launch.html': ['text/html; charset=utf-8', LAUNCH_HTML],
  'index.html': ['text/html; charset=utf-8', INDEX_HTML],
  'fhir-client.js': ['text/javascript; charset=utf-8', bundle],
};

function startPageServer() {
  const server = createServer((req, res) => {
    const file = FILES[new URL(req.url, 'http://x').pathname.replace(/^\/+/, '')];
    if (!file) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' });
    res.end(file[1]);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

let demo;
let expectedPatient;
before(async () => {
  demo = await startDemo({ patients: 5 });
  const pid = demo.user('patient').fhir_user.replace(/^Patient\//, '');
  const patient = await fhirGet(demo.fhirBase, `Patient/${pid}`, demo.backendToken);
  const obs = await fhirGet(demo.fhirBase, `Observation?patient=${pid}&_count=50`, demo.backendToken);
  expectedPatient = { id: pid, name: humanName(patient), observations: (obs.entry ?? []).length };
  assert.ok(expectedPatient.observations > 0, 'the patient has observations in the store');
});
after(async () => { await demo?.stop(); });

/** Registers a public client for `pageBase` (ending in /) and runs the whole launch there. */
async function runLaunch(browser, pageBase, clientId) {
  fhirgate(['auth', 'client', 'add', '--data-dir', demo.dataDir, '--public-url', demo.origin,
    '--id', clientId, '--name', 'fhirclient.js interop test', '--kind', 'public',
    '--redirect-uri', `${pageBase}index.html`, '--scope', SCOPE]);
  const { page } = browser;
  const launch = new URL('launch.html', pageBase);
  launch.search = new URLSearchParams({ iss: demo.fhirBase, client_id: clientId, scope: SCOPE }).toString();
  await page.goto(launch.href);
  // fhirclient discovered the authorization endpoint and redirected there.
  await page.getByLabel('Username').waitFor({ timeout: 30_000 });
  const authorize = new URL(page.url());
  assert.equal(authorize.origin, demo.origin);
  await signIn(page, demo.user('patient'));
  await allowAll(page);
  await page.waitForURL((u) => u.href.startsWith(`${pageBase}index.html`));
  await page.locator('#done').waitFor({ state: 'attached', timeout: 30_000 });
  await page.waitForFunction(() => !document.getElementById('done').hidden, null, { timeout: 30_000 });
  const text = async (id) => (await page.locator(`#${id}`).textContent()).trim();
  assert.equal(await text('error'), '', 'fhirclient reported no error');
  assert.equal(await text('patient-id'), expectedPatient.id);
  assert.equal(await text('patient-name'), expectedPatient.name);
  assert.equal(Number(await text('obs-count')), expectedPatient.observations);
  assert.equal(await text('obs-subjects'), `Patient/${expectedPatient.id}`);
  assert.match(await text('scope'), /patient\/\*\.rs/);
  assert.match(await text('fhir-user'), new RegExp(`Patient/${expectedPatient.id}$`));
}

test('fhirclient.js, app on the gateway\'s origin: authorize, ready, patient.read, Observation search', { timeout: 180_000 }, async () => {
  const browser = await launchChromium();
  try {
    const pageBase = `${demo.origin}/fhirclient-test/`;
    if (process.env.DEBUG_PAGES) browser.page.on("response", (r) => console.error(r.status(), r.url()));
    // Only the test page's own URLs are answered here; everything else reaches fhirgate.
    await browser.context.route(`${pageBase}**`, (route) => {
      const file = FILES[new URL(route.request().url()).pathname.replace('/fhirclient-test/', '')];
      if (!file) return route.fulfill({ status: 404 });
      return route.fulfill({ status: 200, contentType: file[0], body: file[1] });
    });
    // Playwright does not route the target of a redirect, so the authorization server's
    // responses are fetched without following redirects; its redirect back to the app
    // (index.html?code=…&state=…) is replaced by a page that navigates to that same URL,
    // a fresh navigation that the route above answers. Everything else is passed on as is.
    await browser.context.route(`${demo.origin}/auth/**`, async (route) => {
      const response = await route.fetch({ maxRedirects: 0 });
      const location = response.headers().location;
      if (response.status() >= 300 && response.status() < 400 && location
          && new URL(location, route.request().url()).href.startsWith(pageBase)) {
        const target = new URL(location, route.request().url()).href;
        return route.fulfill({
          status: 200,
          contentType: 'text/html; charset=utf-8',
          body: `<!doctype html><script>location.replace(${JSON.stringify(target)})</script>`,
        });
      }
      return route.fulfill({ response });
    });
    await runLaunch(browser, pageBase, 'fhirclient-js-same-origin');
  } catch (err) {
    err.message += `\nbrowser console:\n${browser.console.join('\n')}`;
    throw err;
  } finally {
    await browser.close();
  }
});

test('fhirclient.js, app on its own loopback origin (needs CORS on the token endpoint and the FHIR API)', { timeout: 180_000 }, async () => {
  const server = await startPageServer();
  const browser = await launchChromium();
  try {
    const pageBase = `http://127.0.0.1:${server.address().port}/`;
    // The demo allows any loopback origin on the FHIR API; the browser's preflight is checked
    // here first so a CORS failure is reported as such rather than as a fhirclient error.
    const preflight = await fetch(`${demo.fhirBase}/Patient/${expectedPatient.id}`, {
      method: 'OPTIONS',
      headers: {
        origin: pageBase.slice(0, -1),
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    });
    assert.equal(preflight.status, 204, 'the gateway answers the CORS preflight itself');
    assert.equal(preflight.headers.get('access-control-allow-origin'), pageBase.slice(0, -1));
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    await runLaunch(browser, pageBase, 'fhirclient-js-cross-origin');
  } catch (err) {
    err.message += `\nbrowser console:\n${browser.console.join('\n')}`;
    throw err;
  } finally {
    await browser.close();
    server.close();
  }
});
