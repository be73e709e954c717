//! `fhirgate demo` as a user runs it: the real binary on an ephemeral port with a fresh data
//! folder, driven over HTTP through the gateway, restarted on the same folder, and stopped
//! with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use aws_lc_rs::signature::{RSA_PKCS1_SHA384, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// Generous: a cold start in a debug build on a busy machine generates data and hashes
/// passwords before it is ready.
const READY_WITHIN: Duration = Duration::from_secs(120);
const READY_PREFIX: &str = "fhirgate demo ready at ";

struct Demo {
    child: Child,
    origin: String,
    output: Vec<String>,
    took: Duration,
}

impl Demo {
    fn start(data_dir: &Path) -> anyhow::Result<Demo> {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fhirgate"))
            .args(["demo", "--listen", "127.0.0.1:0", "--patients", "5"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting fhirgate demo")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining after the test stops listening, so the demo never writes
            // into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut demo = Demo {
            child,
            origin: String::new(),
            output: Vec::new(),
            took: Duration::ZERO,
        };
        let deadline = started + READY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                anyhow!(
                    "no ready line within {READY_WITHIN:?}; output so far:\n{}",
                    demo.output.join("\n")
                )
            })?;
            if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                demo.origin = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                demo.took = started.elapsed();
                demo.output.push(line);
                return Ok(demo);
            }
            demo.output.push(line);
        }
    }

    fn manifest(data_dir: &Path) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(data_dir.join("demo.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The token in the printed curl example.
    fn printed_token(&self) -> anyhow::Result<String> {
        let line = self
            .output
            .iter()
            .find(|l| l.contains("curl -H \"Authorization: Bearer "))
            .context("no curl example printed")?;
        let token = line
            .split("Bearer ")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("malformed curl line")?;
        Ok(token.to_owned())
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("fhirgate demo did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// A `private_key_jwt` client assertion signed with the key file the demo wrote.
fn client_assertion(client: &Value, token_endpoint: &str) -> anyhow::Result<String> {
    let key = &client["key"];
    let pem = std::fs::read_to_string(key["private_key_pem"].as_str().context("key path")?)?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(b64)?).map_err(|e| anyhow!("{e}"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let client_id = client["client_id"].as_str().context("client_id")?;
    let header = json!({"alg": "RS384", "typ": "JWT", "kid": key["kid"]});
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": token_endpoint,
        "exp": now + 240, "iat": now, "jti": URL_SAFE_NO_PAD.encode(rand_bytes(16)),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA384,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

async fn backend_token(manifest: &Value) -> anyhow::Result<String> {
    let token_endpoint = manifest["urls"]["token_endpoint"]
        .as_str()
        .context("token endpoint")?;
    let client = manifest["clients"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["client_id"] == "demo-backend"))
        .context("no backend client in demo.json")?;
    let response = http()?
        .post(token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &client_assertion(client, token_endpoint)?,
            ),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status == 200, "token endpoint said {status}: {body}");
    Ok(body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned())
}

async fn patients_through_gateway(fhir_base: &str, token: &str) -> anyhow::Result<Value> {
    let response = http()?
        .get(format!("{fhir_base}/Patient?_count=3"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "Patient search: {}",
        response.status()
    );
    let bundle: Value = response.json().await?;
    ensure!(bundle["resourceType"] == "Bundle" && bundle["type"] == "searchset");
    Ok(bundle)
}

/// A browser without a browser: one cookie, no automatic redirects.
struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> anyhow::Result<Self> {
        Ok(Browser {
            http: http()?,
            cookie: None,
        })
    }

    fn remember(&mut self, response: &reqwest::Response) {
        let pair = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next());
        if let Some(pair) = pair {
            self.cookie = Some(pair.to_owned());
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => request.header("cookie", c),
            None => request,
        }
    }

    async fn get(&mut self, url: &str) -> anyhow::Result<reqwest::Response> {
        let response = self.with_cookie(self.http.get(url)).send().await?;
        self.remember(&response);
        Ok(response)
    }

    async fn post(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let response = self
            .with_cookie(self.http.post(url).form(form))
            .send()
            .await?;
        self.remember(&response);
        Ok(response)
    }
}

fn location(response: &reqwest::Response, base: &str) -> anyhow::Result<String> {
    ensure!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    let to = response.headers()["location"].to_str()?;
    Ok(reqwest::Url::parse(base)?.join(to)?.to_string())
}

/// Every `value="..."` of inputs named `name` in a page.
fn input_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\"");
    html.split('<')
        .filter(|tag| tag.starts_with("input") && tag.contains(&marker))
        .filter_map(|tag| tag.split("value=\"").nth(1)?.split('"').next())
        .map(|v| {
            v.replace("&#x2f;", "/")
                .replace("&#47;", "/")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The demo app's standalone launch, done over HTTP: authorize with PKCE, sign in, consent
/// to everything, swap the code. Returns the token response.
async fn app_launch(manifest: &Value, username: &str) -> anyhow::Result<Value> {
    let urls = &manifest["urls"];
    let origin = urls["origin"].as_str().context("origin")?;
    let password = manifest["users"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["username"] == username))
        .and_then(|u| u["password"].as_str())
        .context("no such user in demo.json")?;
    let redirect_uri = format!("{origin}/app/");
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes(32));
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    let mut authorize =
        reqwest::Url::parse(urls["authorization_endpoint"].as_str().context("authz")?)?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "demo-app")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "launch/patient openid fhirUser patient/*.rs")
        .append_pair("state", "s-123")
        .append_pair("aud", urls["fhir_base"].as_str().context("fhir base")?)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut browser = Browser::new()?;
    let response = browser.get(authorize.as_str()).await?;
    let interact = location(&response, origin)?;
    let login_page = browser.get(&interact).await?.text().await?;
    let csrf = input_values(&login_page, "csrf");
    let login_action = format!("{interact}/login");
    let response = browser
        .post(
            &login_action,
            &[
                ("csrf", csrf.first().context("no csrf on the login page")?),
                ("username", username),
                ("password", password),
            ],
        )
        .await?;
    let next = location(&response, origin)
        .with_context(|| format!("login as {username} did not go on"))?;
    let consent_page = browser.get(&next).await?.text().await?;
    ensure!(
        consent_page.contains("name=\"decision\""),
        "no consent page: {consent_page}"
    );
    let csrf = input_values(&consent_page, "csrf");
    let scopes = input_values(&consent_page, "scope");
    let mut form = vec![(
        "csrf",
        csrf.first()
            .context("no csrf on the consent page")?
            .as_str(),
    )];
    form.extend(scopes.iter().map(|s| ("scope", s.as_str())));
    form.push(("decision", "allow"));
    let response = browser.post(&format!("{interact}/consent"), &form).await?;
    let back = reqwest::Url::parse(&location(&response, origin)?)?;
    ensure!(
        back.as_str().starts_with(&redirect_uri),
        "redirected to {back}"
    );
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no code in {back}"))?;
    let response = http()?
        .post(urls["token_endpoint"].as_str().context("token endpoint")?)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("client_id", "demo-app"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status == 200, "code exchange: {status} {body}");
    Ok(body)
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

/// One line per audit record (interaction, outcome, request id), to say which one is missing.
fn audit_summary(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).unwrap_or_default();
            let event = &record["event"];
            lines.push(format!(
                "  seq {} {} {} {}",
                record["seq"],
                event["subtype"][0]["code"],
                event["outcomeDesc"],
                event["entity"][0]["what"]["identifier"]["value"]
            ));
        }
    }
    lines.join("\n")
}

#[tokio::test]
async fn demo_runs_restarts_and_stops_cleanly() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");

    let cold = Demo::start(&data)?;
    let manifest = Demo::manifest(&data)?;
    let origin = cold.origin.clone();
    let urls = &manifest["urls"];
    assert_eq!(urls["origin"], origin.as_str());
    let fhir_base = format!("{origin}/fhir");
    assert_eq!(urls["fhir_base"], fhir_base.as_str());
    assert_eq!(urls["issuer"], format!("{origin}/auth").as_str());
    let client = http()?;

    let metadata = client.get(format!("{fhir_base}/metadata")).send().await?;
    assert_eq!(metadata.status(), 200);
    metadata.bytes().await?;
    let smart: Value = client
        .get(format!("{fhir_base}/.well-known/smart-configuration"))
        .send()
        .await?
        .json()
        .await?;
    let authorize = smart["authorization_endpoint"].as_str().unwrap_or_default();
    assert!(authorize.starts_with(&format!("{origin}/auth/")), "{smart}");

    let page = client.get(format!("{origin}/app/")).send().await?;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()?
            .starts_with("text/html")
    );
    assert!(page.text().await?.contains("fhirgate demo app"));
    let bare = client.get(format!("{origin}/app")).send().await?;
    assert!(bare.status().is_redirection());
    let config: Value = client
        .get(format!("{origin}/app/config.json"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(config["fhirBase"], fhir_base.as_str());
    assert_eq!(config["clientId"], "demo-app");
    assert_eq!(config["redirectUri"], format!("{origin}/app/").as_str());
    assert!(
        config["scope"]
            .as_str()
            .unwrap_or_default()
            .contains("launch/patient")
    );

    let printed = cold.printed_token()?;
    let bundle = patients_through_gateway(&fhir_base, &printed).await?;
    assert_eq!(bundle["total"], 5);
    let minted = backend_token(&manifest).await?;
    let bundle = patients_through_gateway(&fhir_base, &minted).await?;
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(3));

    let cold_took = cold.took;
    let status = cold.terminate()?;
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let warm = Demo::start(&data)?;
    let again = Demo::manifest(&data)?;
    assert!(
        !warm.output.iter().any(|l| l.starts_with("generating")),
        "regenerated data on restart"
    );
    for (before, after) in manifest["users"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(again["users"].as_array().into_iter().flatten())
    {
        assert_eq!(before["username"], after["username"]);
        assert_eq!(before["password"], after["password"], "password changed");
        assert_eq!(before["fhir_user"], after["fhir_user"]);
    }
    let warm_base = format!("{}/fhir", warm.origin);
    let minted = backend_token(&again).await?;
    let bundle = patients_through_gateway(&warm_base, &minted).await?;
    assert_eq!(bundle["total"], 5);
    // The patient user signs in with the password from the first run, through the public
    // client whose redirect URI moved with the port.
    let token = app_launch(&again, "patient").await?;
    let patient = again["users"][0]["fhir_user"].as_str().unwrap_or_default();
    assert_eq!(
        Some(patient),
        token["patient"]
            .as_str()
            .map(|p| format!("Patient/{p}"))
            .as_deref()
    );
    let read = client
        .get(format!("{warm_base}/{patient}"))
        .bearer_auth(token["access_token"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(read.status(), 200);
    // What a refused request looks like: another patient's record, and no token at all.
    let other = client
        .get(format!("{warm_base}/Patient/pat-1"))
        .bearer_auth(token["access_token"].as_str().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(other.status(), 403);
    let outcome: Value = other.json().await?;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let anonymous = client
        .get(format!("{warm_base}/Patient?_count=3"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    // The record is promised before a response's last byte, not before its head: read the
    // bodies of the answers counted below before counting.
    anonymous.bytes().await?;
    // What the demo turns on for operators: rate-limit headers, metrics, the audit trail.
    assert_eq!(read.headers()["ratelimit-limit"], "20");
    read.bytes().await?;
    let metrics_url = again["urls"]["metrics"].as_str().unwrap_or_default();
    let metrics = client.get(metrics_url).send().await?.text().await?;
    assert!(
        metrics.contains("fhirgate_http_requests_total{"),
        "{metrics}"
    );
    let audit_log = again["files"]["audit_log"].as_str().unwrap_or_default();
    let report = fhirgate_audit::verify(&[std::path::PathBuf::from(audit_log)])?;
    assert!(report.is_intact(), "{report:?}");
    // Both runs' FHIR requests, in one chain across the restart.
    assert!(
        report.records >= 7,
        "{report:?}\nrecords:\n{}",
        audit_summary(Path::new(audit_log))
    );
    let warm_took = warm.took;
    let status = warm.terminate()?;
    assert!(status.success(), "exit status after SIGTERM: {status}");

    eprintln!(
        "demo start to ready: cold {:.2}s, warm {:.2}s",
        cold_took.as_secs_f64(),
        warm_took.as_secs_f64()
    );
    Ok(())
}
