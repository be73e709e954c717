// fhirgate demo SMART app: standalone launch with PKCE S256, then a read-only view of one
// patient's record fetched through the gateway. Plain JavaScript, no build step.
"use strict";

const STORE = window.sessionStorage;
const $ = (id) => document.getElementById(id);

async function loadConfig() {
  // The binary serves config.json next to this file; the defaults match `fhirgate demo`.
  const defaults = {
    fhirBase: `${location.origin}/fhir`,
    clientId: "demo-app",
    scope: "launch/patient openid fhirUser offline_access patient/*.rs",
    redirectUri: `${location.origin}${location.pathname}`,
  };
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) return Object.assign(defaults, await res.json());
  } catch (_) { /* fall back to defaults */ }
  return defaults;
}

function randomString(bytes) {
  const data = new Uint8Array(bytes);
  crypto.getRandomValues(data);
  return base64url(data);
}

function base64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

async function discover(config) {
  const res = await fetch(`${config.fhirBase}/.well-known/smart-configuration`);
  if (!res.ok) throw new Error(`SMART discovery failed with HTTP ${res.status}`);
  return res.json();
}

async function launch(config) {
  const smart = await discover(config);
  const verifier = randomString(48);
  const state = randomString(24);
  STORE.setItem("pkce_verifier", verifier);
  STORE.setItem("oauth_state", state);
  STORE.setItem("token_endpoint", smart.token_endpoint);
  const params = new URLSearchParams({
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    scope: config.scope,
    state,
    aud: config.fhirBase,
    code_challenge: await pkceChallenge(verifier),
    code_challenge_method: "S256",
  });
  location.assign(`${smart.authorization_endpoint}?${params}`);
}

async function tokenRequest(body) {
  const res = await fetch(STORE.getItem("token_endpoint"), {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new Error(`token endpoint: ${json.error || res.status} ${json.error_description || ""}`.trim());
  }
  return json;
}

function saveToken(token) {
  STORE.setItem("token", JSON.stringify(token));
}

function currentToken() {
  const raw = STORE.getItem("token");
  return raw ? JSON.parse(raw) : null;
}

async function completeLaunch(config, query) {
  // The code is single-use and an error is shown once: a reload must not replay either.
  history.replaceState(null, "", location.pathname);
  if (query.get("error")) {
    throw new Error(`authorization refused: ${query.get("error")} ${query.get("error_description") || ""}`);
  }
  if (query.get("state") !== STORE.getItem("oauth_state")) {
    throw new Error("state mismatch: this response was not requested by this browser tab");
  }
  const token = await tokenRequest({
    grant_type: "authorization_code",
    code: query.get("code"),
    redirect_uri: config.redirectUri,
    client_id: config.clientId,
    code_verifier: STORE.getItem("pkce_verifier"),
  });
  STORE.removeItem("pkce_verifier");
  STORE.removeItem("oauth_state");
  saveToken(token);
}

async function refresh(config) {
  const token = currentToken();
  if (!token || !token.refresh_token) return false;
  const fresh = await tokenRequest({
    grant_type: "refresh_token",
    refresh_token: token.refresh_token,
    client_id: config.clientId,
  });
  saveToken(Object.assign({}, token, fresh));
  return true;
}

class GatewayError extends Error {
  constructor(status, outcome) {
    const text = outcome && outcome.issue
      ? outcome.issue.map((i) => i.diagnostics || i.code).join("; ")
      : `HTTP ${status}`;
    super(text);
    this.status = status;
  }
}

// GET through the gateway; on 401 refresh once (expired token), then give up.
async function fhirGet(config, path, retried = false) {
  const token = currentToken();
  const res = await fetch(`${config.fhirBase}/${path}`, {
    headers: { Authorization: `Bearer ${token.access_token}`, Accept: "application/fhir+json" },
  });
  if (res.status === 401 && !retried && (await refresh(config))) {
    return fhirGet(config, path, true);
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new GatewayError(res.status, body);
  return body;
}

function entries(bundle) {
  return (bundle.entry || [])
    .filter((e) => !e.search || e.search.mode !== "outcome")
    .map((e) => e.resource)
    .filter(Boolean);
}

function codeText(concept) {
  if (!concept) return "(no code)";
  if (concept.text) return concept.text;
  const coding = (concept.coding || [])[0];
  return coding ? coding.display || coding.code : "(no code)";
}

function quantityText(obs) {
  const q = obs.valueQuantity;
  if (q) return `${Number(q.value).toLocaleString()} ${q.unit || q.code || ""}`.trim();
  if (obs.valueCodeableConcept) return codeText(obs.valueCodeableConcept);
  if (obs.valueString) return obs.valueString;
  if (obs.component) {
    return obs.component.map((c) => `${codeText(c.code)} ${c.valueQuantity ? c.valueQuantity.value : ""}`).join(", ");
  }
  return "";
}

function when(obs) {
  return (obs.effectiveDateTime || obs.issued || obs.recordedDate || obs.authoredOn || "").slice(0, 10);
}

function fillList(id, items, render) {
  const list = $(id);
  list.replaceChildren();
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Nothing recorded.";
    list.append(li);
    return;
  }
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = render(item);
    list.append(li);
  }
}

function showDenied(id, err) {
  const list = $(id);
  const li = document.createElement("li");
  li.className = "denied";
  li.textContent = err.status === 403
    ? `Not permitted by the granted scopes (${err.message}).`
    : `Could not load: ${err.message}`;
  list.replaceChildren(li);
}

function patientName(patient) {
  const name = (patient.name || [])[0] || {};
  return name.text || [...(name.given || []), name.family].filter(Boolean).join(" ") || patient.id;
}

function renderBanner(patient) {
  const banner = $("banner");
  banner.replaceChildren();
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = patientName(patient);
  const details = document.createElement("div");
  const mrn = ((patient.identifier || [])[0] || {}).value;
  details.textContent = [
    patient.gender, patient.birthDate && `born ${patient.birthDate}`, mrn && `MRN ${mrn}`, `id ${patient.id}`,
  ].filter(Boolean).join(" · ");
  banner.append(name, details);
}

// LOINC codes worth charting, best first: heart rate, systolic pressure, body weight.
const CHART_PREFERENCE = ["8867-4", "8480-6", "29463-7"];

function loinc(concept) {
  const coding = ((concept && concept.coding) || []).find((c) => c.system === "http://loinc.org");
  return coding ? coding.code : "";
}

// A small line chart of one numeric vital sign over time: a preferred one when recorded at
// least twice, otherwise the most frequently recorded.
function renderChart(observations) {
  const chart = $("chart");
  chart.replaceChildren();
  const series = new Map();
  for (const obs of observations) {
    if (!obs.valueQuantity || typeof obs.valueQuantity.value !== "number" || !when(obs)) continue;
    const key = codeText(obs.code);
    if (!series.has(key)) series.set(key, { code: loinc(obs.code), points: [] });
    series.get(key).points.push({ t: Date.parse(when(obs)), v: obs.valueQuantity.value, unit: obs.valueQuantity.unit || "" });
  }
  const rank = (code) => {
    const i = CHART_PREFERENCE.indexOf(code);
    return i === -1 ? CHART_PREFERENCE.length : i;
  };
  const best = [...series.entries()]
    .filter(([, s]) => s.points.length >= 2)
    .sort((a, b) => rank(a[1].code) - rank(b[1].code) || b[1].points.length - a[1].points.length)[0];
  if (!best) return;
  const [label, { points }] = best;
  points.sort((a, b) => a.t - b.t);
  const W = 320, H = 140, P = 28;
  const tMin = points[0].t, tMax = points[points.length - 1].t || tMin + 1;
  const vs = points.map((p) => p.v);
  const vMin = Math.min(...vs), vMax = Math.max(...vs) === vMin ? vMin + 1 : Math.max(...vs);
  const x = (t) => P + ((t - tMin) / (tMax - tMin || 1)) * (W - 2 * P);
  const y = (v) => H - P + 8 - ((v - vMin) / (vMax - vMin)) * (H - 2 * P);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label} over time`);
  const path = document.createElementNS(NS, "polyline");
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "#1f4e79");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("points", points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "));
  svg.append(path);
  for (const p of points) {
    const dot = document.createElementNS(NS, "circle");
    dot.setAttribute("cx", x(p.t).toFixed(1));
    dot.setAttribute("cy", y(p.v).toFixed(1));
    dot.setAttribute("r", "2.5");
    dot.setAttribute("fill", "#1f4e79");
    svg.append(dot);
  }
  const title = document.createElementNS(NS, "text");
  title.setAttribute("x", P);
  title.setAttribute("y", 12);
  title.textContent = `${label} (${points[0].unit}) ${vMin}–${Math.max(...vs)}`;
  svg.append(title);
  chart.append(svg);
}

async function section(id, loader, render) {
  try {
    const items = await loader();
    fillList(id, items, render);
    return items;
  } catch (err) {
    if (err.status === undefined) throw err;
    showDenied(id, err);
    return [];
  }
}

async function showRecord(config) {
  const token = currentToken();
  const patientId = token.patient;
  if (!patientId) throw new Error("the token carries no patient context (was launch/patient granted?)");
  $("granted").textContent = token.scope || "";
  $("status").textContent = "Loading the record through the gateway…";
  const patient = await fhirGet(config, `Patient/${encodeURIComponent(patientId)}`);
  renderBanner(patient);
  $("record").hidden = false;
  const pid = encodeURIComponent(patientId);
  const vitals = await section("vitals",
    async () => entries(await fhirGet(config, `Observation?patient=${pid}&category=vital-signs&_sort=-date&_count=100`)),
    (o) => `${when(o)}  ${codeText(o.code)}: ${quantityText(o)}`);
  renderChart(vitals);
  await section("labs",
    async () => entries(await fhirGet(config, `Observation?patient=${pid}&category=laboratory&_sort=-date&_count=50`)),
    (o) => `${when(o)}  ${codeText(o.code)}: ${quantityText(o)}`);
  await section("conditions",
    async () => entries(await fhirGet(config, `Condition?patient=${pid}`)),
    (c) => `${codeText(c.code)}${c.onsetDateTime ? ` (since ${c.onsetDateTime.slice(0, 10)})` : ""}`);
  await section("medications",
    async () => entries(await fhirGet(config, `MedicationRequest?patient=${pid}`)),
    (m) => `${codeText(m.medicationCodeableConcept)} — ${m.status || ""}`);
  await section("allergies",
    async () => entries(await fhirGet(config, `AllergyIntolerance?patient=${pid}`)),
    (a) => `${codeText(a.code)}${a.criticality ? ` (${a.criticality})` : ""}`);
  $("status").textContent = "";
}

function showError(err) {
  const box = $("error");
  const text = err.message || String(err);
  box.textContent = err.status
    ? `The gateway answered HTTP ${err.status}: ${text}`
    : text;
  box.hidden = false;
  $("status").textContent = "";
}

async function main() {
  const config = await loadConfig();
  $("launch").addEventListener("click", () => launch(config).catch(showError));
  $("logout").addEventListener("click", () => { STORE.clear(); location.assign(location.pathname); });
  const query = new URLSearchParams(location.search);
  try {
    if (query.has("code") || query.has("error")) await completeLaunch(config, query);
    if (currentToken()) {
      await showRecord(config);
    } else {
      $("launch-panel").hidden = false;
    }
  } catch (err) {
    showError(err);
    $("launch-panel").hidden = false;
  }
}

main();
