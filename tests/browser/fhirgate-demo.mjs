// Helpers shared by the browser tests that run the real `fhirgate demo` binary:
// find (or build) the binary, start the demo on a free loopback port with a fresh data
// folder, register extra clients with the CLI, and start headless Chromium (system
// /usr/bin/chromium, fresh profile, never downloaded).
//
// The binary is $FHIRGATE_BIN, else $FHIRGATE_TARGET_DIR/debug/fhirgate (scripts/test.sh
// sets it), else $CARGO_TARGET_DIR/debug/fhirgate, else <repo>/target/debug/fhirgate; when
// it does not exist it is built once with `cargo build -p fhirgate`.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const repoRoot = resolve(import.meta.dirname, '..', '..');

export function fhirgateBin() {
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

/** Runs a fhirgate CLI command to completion; returns its stdout, throws on failure. */
export function fhirgate(args) {
  const run = spawnSync(fhirgateBin(), args, { cwd: repoRoot, encoding: 'utf8' });
  if (run.status !== 0) {
    throw new Error(`fhirgate ${args.join(' ')} exited with ${run.status}: ${run.stderr}`);
  }
  return run.stdout;
}

/**
 * Starts `fhirgate demo --listen 127.0.0.1:0` on a fresh data folder (or `dataDir`) and waits
 * for its ready line. Returns { origin, fhirBase, demo (demo.json), backendToken, dataDir,
 * user(name), stop() }. `stop()` kills the process and removes the data folder it created.
 */
export async function startDemo({ patients = 5, dataDir } = {}) {
  const ownDir = !dataDir;
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'fhirgate-demo-'));
  const child = spawn(fhirgateBin(), [
    'demo', '--listen', '127.0.0.1:0', '--data-dir', dir, '--patients', String(patients),
  ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  let exited = false;
  const stop = async () => {
    if (!exited && child.exitCode === null) {
      const gone = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  child.once('exit', () => { exited = true; });
  createInterface({ input: child.stderr }).on('line', (l) => {
    output.push(l);
    if (process.env.DEBUG_DEMO) console.error('[demo]', l);
  });
  try {
    const ready = await new Promise((ok, fail) => {
      const lines = createInterface({ input: child.stdout });
      let token;
      lines.on('line', (line) => {
        output.push(line);
        if (process.env.DEBUG_DEMO) console.error('[demo]', line);
        const bearer = line.match(/Authorization: Bearer ([A-Za-z0-9._-]+)/);
        if (bearer) token = bearer[1];
        const m = line.match(/fhirgate demo ready at (http:\/\/\S+)/);
        if (m) ok({ origin: m[1], backendToken: token });
      });
      child.once('exit', (code) => fail(new Error(`fhirgate demo exited with ${code}:\n${output.join('\n')}`)));
      setTimeout(() => fail(new Error(`fhirgate demo not ready after 120 s:\n${output.join('\n')}`)), 120_000).unref();
    });
    const demo = JSON.parse(readFileSync(join(dir, 'demo.json'), 'utf8'));
    return {
      ...ready,
      fhirBase: demo.urls.fhir_base,
      demo,
      dataDir: dir,
      output,
      user: (name) => demo.users.find((u) => u.username === name),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** GET {fhirBase}/{path} with a bearer token; returns the parsed JSON, throws on non-2xx. */
export async function fhirGet(fhirBase, path, token) {
  const resp = await fetch(`${fhirBase}/${path}`, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json' },
  });
  const body = await resp.text();
  if (!resp.ok) throw new Error(`GET ${path}: HTTP ${resp.status}: ${body}`);
  return JSON.parse(body);
}

export function humanName(patient) {
  const name = (patient.name ?? [])[0] ?? {};
  return name.text ?? [...(name.given ?? []), name.family].filter(Boolean).join(' ');
}

/** Headless Chromium with a fresh profile; `close()` closes it and removes the profile. */
export async function launchChromium() {
  const profile = mkdtempSync(join(tmpdir(), 'fhirgate-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run',
      ],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const console_ = [];
    page.on('console', (msg) => console_.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => console_.push(`pageerror: ${err.message}`));
    return {
      context,
      page,
      console: console_,
      close: async () => {
        await context.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}

/** On the authorization server's login page: fill in the user and submit. */
export async function signIn(page, user) {
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** On the consent page: keep every scope ticked and allow. */
export async function allowAll(page) {
  await page.getByRole('heading', { name: /Allow/ }).waitFor();
  await page.getByRole('button', { name: 'Allow' }).click();
}

/** On the patient picker: search by `query`, choose the patient labelled `name`. */
export async function pickPatient(page, query, name) {
  await page.getByRole('heading', { name: 'Choose a patient' }).waitFor();
  await page.getByLabel('Search by name or id').fill(query);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(name).first().waitFor();
  await page.getByLabel(new RegExp(name)).check();
  await page.getByRole('button', { name: 'Continue' }).click();
}
