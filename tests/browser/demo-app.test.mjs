// The demo SMART app at /app/, end to end in headless Chromium against the real
// `fhirgate demo`: click Launch, sign in on the embedded authorization server, (pick a
// patient,) consent, land back on the app and check it shows the patient's banner and vital
// signs as the FHIR store holds them (read independently through the gateway with the
// backend-services token the demo prints).
//
// Run from tests/browser:  npm ci && node --test demo-app.test.mjs
// (see fhirgate-demo.mjs for how the binary is found).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDemo, launchChromium, signIn, allowAll, pickPatient, fhirGet, humanName,
} from './fhirgate-demo.mjs';

let demo;
before(async () => { demo = await startDemo({ patients: 5 }); });
after(async () => { await demo?.stop(); });

/** What the store holds for a patient: its name and the codes of its vital signs. */
async function expected(patientId) {
  const patient = await fhirGet(demo.fhirBase, `Patient/${patientId}`, demo.backendToken);
  const vitals = await fhirGet(demo.fhirBase,
    `Observation?patient=${patientId}&category=vital-signs&_count=100`, demo.backendToken);
  const codes = new Set((vitals.entry ?? []).map((e) => e.resource.code.text
    ?? e.resource.code.coding?.[0]?.display));
  return { name: humanName(patient), vitalCodes: codes };
}

async function assertRecordShown(page, patientId) {
  const want = await expected(patientId);
  assert.ok(want.name, `patient ${patientId} has a name in the store`);
  assert.ok(want.vitalCodes.size > 0, `patient ${patientId} has vital signs in the store`);

  const banner = page.getByLabel('Patient banner');
  await banner.getByText(want.name).waitFor({ timeout: 30_000 });
  assert.match(await banner.innerText(), new RegExp(`id ${patientId}`));

  // The vitals list fills after the banner; wait until it has entries, then compare.
  const vitals = page.locator('#vitals li');
  await vitals.first().waitFor();
  const items = await vitals.allInnerTexts();
  assert.ok(!items.some((t) => /Nothing recorded|Could not load|Not permitted/.test(t)),
    `vital signs listed: ${items.join(' | ')}`);
  for (const item of items) {
    assert.ok([...want.vitalCodes].some((c) => item.includes(c)),
      `"${item}" is one of the patient's vital signs (${[...want.vitalCodes].join(', ')})`);
  }
  // The chart is an SVG of one vital sign over time.
  assert.equal(await page.locator('#chart svg polyline').count(), 1);
  assert.equal(await page.locator('#error').isHidden(), true);
}

test('patient user: launch, sign in, consent, and the app shows their own record', { timeout: 180_000 }, async () => {
  const user = demo.user('patient');
  const patientId = user.fhir_user.replace(/^Patient\//, '');
  const browser = await launchChromium();
  try {
    const { page } = browser;
    const resp = await page.goto(demo.demo.urls.app);
    assert.equal(resp.status(), 200);
    await page.getByRole('button', { name: /Launch/ }).click();
    await page.getByLabel('Username').waitFor();
    assert.equal(new URL(page.url()).origin, demo.origin);
    assert.match(new URL(page.url()).pathname, /^\/auth\//);
    await signIn(page, user);
    await allowAll(page);
    await page.waitForURL((url) => url.pathname === '/app/');
    await assertRecordShown(page, patientId);
    const granted = await page.locator('#granted').innerText();
    assert.match(granted, /patient\/\*\.rs/);
  } catch (err) {
    err.message += `\nbrowser console:\n${browser.console.join('\n')}`;
    throw err;
  } finally {
    await browser.close();
  }
});

test('practitioner: launch, sign in, pick a patient, consent, and the app shows that patient', { timeout: 180_000 }, async () => {
  const user = demo.user('practitioner');
  // Pick a patient other than the patient user's own.
  const own = demo.user('patient').fhir_user.replace(/^Patient\//, '');
  const all = await fhirGet(demo.fhirBase, 'Patient?_count=50', demo.backendToken);
  const target = all.entry.map((e) => e.resource).find((p) => p.id !== own);
  const name = humanName(target);
  const browser = await launchChromium();
  try {
    const { page } = browser;
    await page.goto(demo.demo.urls.app);
    await page.getByRole('button', { name: /Launch/ }).click();
    await signIn(page, user);
    await pickPatient(page, target.name[0].family, name);
    await allowAll(page);
    await page.waitForURL((url) => url.pathname === '/app/');
    await assertRecordShown(page, target.id);
  } catch (err) {
    err.message += `\nbrowser console:\n${browser.console.join('\n')}`;
    throw err;
  } finally {
    await browser.close();
  }
});

test('refusals are shown, not crashed on: a data scope unticked at consent, then Deny', { timeout: 180_000 }, async () => {
  const user = demo.user('patient');
  const browser = await launchChromium();
  try {
    const { page } = browser;
    await page.goto(demo.demo.urls.app);
    await page.getByRole('button', { name: /Launch/ }).click();
    await signIn(page, user);
    await page.getByRole('heading', { name: /Allow/ }).waitFor();
    await page.getByLabel('Read and search all kinds of data for the selected patient').uncheck();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL((url) => url.pathname === '/app/');
    // The gateway refuses the Patient read (403); the app shows the OperationOutcome's text.
    const error = page.getByRole('alert');
    await error.waitFor({ timeout: 30_000 });
    assert.match(await error.innerText(), /403/);
    assert.equal(await page.locator('#record').isHidden(), true, 'no record shown');

    // Start over and deny: the app is sent back with error=access_denied and says so.
    await page.evaluate(() => { sessionStorage.clear(); localStorage.clear(); });
    await page.goto(demo.demo.urls.app);
    await page.getByRole('button', { name: /Launch/ }).click();
    // Login again unless the authorization server kept the sign-in.
    const form = page.locator('form').first();
    await form.waitFor();
    if (await page.getByLabel('Username').count() > 0) await signIn(page, user);
    await page.getByRole('heading', { name: /Allow/ }).waitFor();
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL((url) => url.pathname === '/app/');
    await page.getByRole('alert').waitFor({ timeout: 30_000 });
    assert.match(await page.getByRole('alert').innerText(), /access_denied|denied/i);
    assert.equal(await page.getByRole('button', { name: /Launch/ }).isVisible(), true, 'can launch again');
  } catch (err) {
    err.message += `\nbrowser console:\n${browser.console.join('\n')}`;
    throw err;
  } finally {
    await browser.close();
  }
});
