"""The Python SMART client (`fhirclient` from PyPI) against the real `fhirgate demo`.

fhirclient discovers the OAuth endpoints only through the SMART extension of the
CapabilityStatement at `{fhirBase}/metadata`, builds the authorize URL (v1 scopes, PKCE S256,
`state`, `aud`); this test plays the user's browser over HTTP (a `requests` session keeps the
authorization server's cookie; the login, patient-picker and consent forms are parsed and
posted with their CSRF token), hands the redirect back to fhirclient, which exchanges the code,
and then reads through the gateway with fhirclient's own FHIR models.
"""

from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRPermissionDeniedException

from conftest import fhirgate


class Forms(HTMLParser):
    """Collects the forms of a page: action, method, inputs and submit buttons."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._form = None
        self._button = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                          "inputs": [], "buttons": []}
            self.forms.append(self._form)
        elif self._form is not None and tag == "input":
            self._form["inputs"].append(a)
        elif self._form is not None and tag == "button":
            self._button = {"name": a.get("name"), "value": a.get("value", ""),
                            "type": a.get("type", "submit"), "text": ""}
            self._form["buttons"].append(self._button)

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None


def submit(session, page_url, html, fill, button_text):
    """Posts the form that has a submit button labelled `button_text`, with its hidden
    fields (the CSRF token), its ticked checkboxes and the values in `fill`."""
    parser = Forms()
    parser.feed(html)
    for form in parser.forms:
        button = next((b for b in form["buttons"] if b["text"].strip() == button_text), None)
        if button is None:
            continue
        data = []
        for i in form["inputs"]:
            kind, name = i.get("type", "text"), i.get("name")
            if not name or kind in ("submit", "button"):
                continue
            if kind in ("checkbox", "radio"):
                if name in fill:
                    if i.get("value") == fill[name]:
                        data.append((name, i.get("value", "on")))
                elif "checked" in i:
                    data.append((name, i.get("value", "on")))
            else:
                data.append((name, fill.get(name, i.get("value", ""))))
        if button["name"]:
            data.append((button["name"], button["value"]))
        action = urljoin(page_url, form["action"] or page_url)
        return session.request(form["method"], action, data=data, allow_redirects=False, timeout=30)
    raise AssertionError(f"no form with a {button_text!r} button on {page_url}:\n{html}")


def run_browser(authorize_url, redirect_uri, user, patient_id=None):
    """Plays the user agent from the authorize URL to the redirect back to the app; returns
    that redirect URL (with `code` and `state`)."""
    session = requests.Session()
    resp = session.get(authorize_url, allow_redirects=False, timeout=30)
    for _ in range(20):
        if resp.is_redirect:
            target = urljoin(resp.url, resp.headers["location"])
            if target.startswith(redirect_uri):
                return target
            resp = session.get(target, allow_redirects=False, timeout=30)
            continue
        assert resp.status_code == 200, f"{resp.status_code} at {resp.url}: {resp.text[:2000]}"
        html = resp.text
        if 'name="password"' in html:
            resp = submit(session, resp.url, html,
                          {"username": user["username"], "password": user["password"]}, "Sign in")
        elif "Choose a patient" in html:
            assert patient_id, "a patient picker appeared; choose whom?"
            resp = submit(session, resp.url, html, {"patient": patient_id}, "Continue")
        elif "Allow" in html:
            resp = submit(session, resp.url, html, {}, "Allow")
        else:
            raise AssertionError(f"unexpected page at {resp.url}:\n{html[:3000]}")
    raise AssertionError("no redirect back to the app after 20 steps")


def launch(demo, app_id, redirect_uri, scope, user, app_secret=None, patient_id=None):
    settings = {"app_id": app_id, "api_base": demo.fhir_base, "redirect_uri": redirect_uri,
                "scope": scope}
    if app_secret:
        settings["app_secret"] = app_secret
    smart = smart_client.FHIRClient(settings=settings)
    # Discovery: fhirclient reads the authorize and token URLs from /metadata.
    authorize_url = smart.authorize_url
    assert authorize_url, "fhirclient found an authorize endpoint in /metadata"
    assert authorize_url.startswith(demo.manifest["urls"]["authorization_endpoint"] + "?")
    query = parse_qs(urlparse(authorize_url).query)
    assert query["aud"] == [demo.fhir_base]
    assert query["code_challenge_method"] == ["S256"]
    assert "launch/patient" in query["scope"][0].split()

    callback = run_browser(authorize_url, redirect_uri, user, patient_id)
    smart.handle_callback(callback)
    assert smart.ready
    return smart


def expected_name(demo, patient_id):
    name = demo.backend_get(f"Patient/{patient_id}")["name"][0]
    return " ".join([*name.get("given", []), name["family"]])


def test_confidential_client_patient_user_reads_own_record(demo):
    """demo-confidential (client_secret_basic), v1 scopes, the patient user."""
    client = demo.client("demo-confidential")
    user = demo.user("patient")
    own = user["fhir_user"].split("/", 1)[1]
    smart = launch(demo, client["client_id"], "http://127.0.0.1:8765/callback",
                   "openid fhirUser patient/*.read", user, app_secret=client["client_secret"])

    assert smart.patient_id == own
    patient = smart.patient
    assert isinstance(patient, Patient)
    assert patient.id == own
    assert smart.human_name(patient.name[0]) == expected_name(demo, own)

    observations = list(Observation.where(struct={"patient": own, "_count": "20"}).perform_resources_iter(smart.server))
    assert observations, "the patient's observations come back through the gateway"
    assert {o.subject.reference for o in observations} == {f"Patient/{own}"}

    # Another patient's record is refused by the gateway (403).
    other = next(e["resource"]["id"] for e in demo.backend_get("Patient?_count=10")["entry"]
                 if e["resource"]["id"] != own)
    with pytest.raises(FHIRPermissionDeniedException):
        Patient.read(other, smart.server)


def test_public_client_practitioner_picks_a_patient(demo):
    """A public client registered with the CLI (PKCE only, no secret), the practitioner user
    choosing a patient on the picker."""
    redirect_uri = "http://127.0.0.1:8766/fhirclient-py/callback"
    fhirgate("auth", "client", "add", "--data-dir", demo.data_dir, "--public-url", demo.origin,
             "--id", "fhirclient-py", "--name", "fhirclient (Python) interop test",
             "--kind", "public", "--redirect-uri", redirect_uri)
    patients = [e["resource"]["id"] for e in demo.backend_get("Patient?_count=10")["entry"]]
    chosen = patients[-1]
    smart = launch(demo, "fhirclient-py", redirect_uri, "openid fhirUser patient/*.read",
                   demo.user("practitioner"), patient_id=chosen)

    assert smart.patient_id == chosen
    assert smart.patient.id == chosen
    assert smart.human_name(smart.patient.name[0]) == expected_name(demo, chosen)
    observations = list(Observation.where(struct={"patient": chosen}).perform_resources_iter(smart.server))
    assert observations
    assert {o.subject.reference for o in observations} == {f"Patient/{chosen}"}


def test_default_v1_scopes_are_granted_as_far_as_allowed(demo):
    """fhirclient's own default scopes (SMART v1: `user/*.* patient/*.read openid profile`,
    plus `launch/patient`): the authorization server grants the subset the client may have,
    and the patient read works with what was granted."""
    client = demo.client("demo-confidential")
    user = demo.user("patient")
    own = user["fhir_user"].split("/", 1)[1]
    settings = {"app_id": client["client_id"], "app_secret": client["client_secret"],
                "api_base": demo.fhir_base, "redirect_uri": "http://127.0.0.1:8767/callback"}
    smart = smart_client.FHIRClient(settings=settings)
    requested = set(parse_qs(urlparse(smart.authorize_url).query)["scope"][0].split())
    assert {"user/*.*", "patient/*.read", "openid", "profile", "launch/patient"} <= requested
    smart.handle_callback(run_browser(smart.authorize_url, settings["redirect_uri"], user))

    granted = set(smart.launch_context["scope"].split())
    assert granted <= requested, f"granted {granted} beyond requested {requested}"
    assert "patient/*.read" in granted
    assert smart.patient_id == own
    assert smart.patient.id == own


def test_refresh_token_renews_access_and_saved_state_resumes(demo):
    """`offline_access`: fhirclient keeps the refresh token, `reauthorize()` gets a new access
    token that works through the gateway, and a client rebuilt from the saved state (as a web
    app does between requests) reads without a new launch."""
    client = demo.client("demo-confidential")
    user = demo.user("patient")
    own = user["fhir_user"].split("/", 1)[1]
    saved = {}
    settings = {"app_id": client["client_id"], "app_secret": client["client_secret"],
                "api_base": demo.fhir_base, "redirect_uri": "http://127.0.0.1:8768/callback",
                "scope": "openid fhirUser offline_access patient/*.read"}
    smart = smart_client.FHIRClient(settings=settings, save_func=saved.update)
    smart.handle_callback(run_browser(smart.authorize_url, settings["redirect_uri"], user))
    first = smart.server.auth.access_token
    assert smart.server.auth.refresh_token, "a refresh token was issued for offline_access"

    assert smart.reauthorize(), "the refresh grant succeeded"
    renewed = smart.server.auth.access_token
    assert renewed and renewed != first
    assert Patient.read(own, smart.server).id == own

    resumed = smart_client.FHIRClient(state=dict(saved))
    assert resumed.server.auth.access_token == renewed
    assert resumed.patient_id == own
    assert resumed.patient.id == own
