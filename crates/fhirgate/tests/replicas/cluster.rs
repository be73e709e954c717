//! The scaled-out layout on loopback: one `redis-server`, one `fhirgate auth serve`, a mock
//! FHIR server, and gateway replicas (`fhirgate serve`) that share Redis for rate limits and
//! revocation notices, each with its own audit directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fhirgate_testkit::mint::{JwtBuilder, TestKey, now_secs};
use fhirgate_testkit::process::FhirgateProcess;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_fhirgate");
/// What clients call the FHIR API; the tokens' audience. Never connected to.
pub const PUBLIC_BASE: &str = "http://gateway.replicas.test/fhir";
pub const CLIENT: &str = "replica-backend";
/// Requests carrying this header count against the shared rate limit (one rule keyed on it).
pub const BUDGET_HEADER: &str = "x-test-budget";
pub const BUDGET_PER_HOUR: u64 = 120;

/// A `redis-server` on a free port, without persistence. Missing binary: a loud failure.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    pub async fn start() -> Redis {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        Redis {
            child: Self::spawn(port).await,
            port,
        }
    }

    async fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server is required for the replica test (apt install redis-server): {e}"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child
    }

    /// A fresh, empty server on the same port (a Redis restart without persistence).
    pub async fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port).await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (the replicas must keep serving).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The authorization server alone, with one backend-services client.
pub struct AuthServer {
    pub process: FhirgateProcess,
    pub issuer: String,
    key: TestKey,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    pub async fn start(redis_url: &str) -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::rsa("replica-client-key").unwrap();
        let jwks = dir.path().join("client-jwks.json");
        std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).unwrap();
        let data = dir.path().join("auth");
        let status = Command::new(BIN)
            .args(["auth", "client", "add", "--data-dir"])
            .arg(&data)
            .args(["--id", CLIENT, "--name", "replica test"])
            .args([
                "--kind",
                "confidential-asymmetric",
                "--scope",
                "system/*.rs",
            ])
            .arg("--jwks-file")
            .arg(&jwks)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "auth client add failed");
        let args: Vec<String> = [
            "--log-format",
            "json",
            "auth",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--fhir-base",
            PUBLIC_BASE,
            "--redis-url",
            redis_url,
            "--data-dir",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([data.display().to_string()])
        .collect();
        let process = FhirgateProcess::spawn(BIN, &args, &[]).await.unwrap();
        let issuer = format!("{}/auth", process.address);
        AuthServer {
            process,
            issuer,
            key,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn assertion(&self) -> String {
        JwtBuilder::new(&self.key, "RS384")
            .header("typ", "JWT")
            .claim("iss", CLIENT)
            .claim("sub", CLIENT)
            .claim("aud", format!("{}/token", self.issuer))
            .claim("exp", now_secs() + 120)
            .claim("jti", format!("{:032x}", rand::random::<u128>()))
            .build()
            .unwrap()
    }

    fn client_auth(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", self.assertion()),
        ]
    }

    /// A fresh `system/*.rs` access token through the token endpoint (SMART Backend Services).
    pub async fn token(&self) -> String {
        let mut form = self.client_auth();
        form.push(("grant_type", "client_credentials".to_owned()));
        form.push(("scope", "system/*.rs".to_owned()));
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token endpoint refused");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// RFC 7009 revocation of `token`.
    pub async fn revoke(&self, token: &str) {
        let mut form = self.client_auth();
        form.push(("token", token.to_owned()));
        let response = self
            .http
            .post(format!("{}/revoke", self.issuer))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "revocation endpoint refused");
    }
}

/// A mock FHIR server answering one Patient.
pub async fn upstream() -> MockUpstream {
    let up = MockUpstream::start().await.unwrap();
    up.respond(
        "/Patient/p1",
        Canned::resource(&json!({"resourceType": "Patient", "id": "p1"})),
    );
    up
}

pub struct Replica {
    pub process: FhirgateProcess,
    pub audit_dir: PathBuf,
}

impl Replica {
    pub async fn start(
        upstream: &str,
        issuer: &str,
        redis_url: &str,
        audit_dir: &Path,
        prefix: &str,
    ) -> Replica {
        let yaml = format!(
            r#"
listen: 127.0.0.1:0
public_base_url: {PUBLIC_BASE}
upstream:
  url: {upstream}
auth:
  issuers:
    - issuer: {issuer}
      required_typ: at+jwt
      allow_http: true
  revocation:
    redis_url: {redis_url}
    timeout: 500ms
    resync_interval: 1s
rate_limit:
  rules:
    - name: shared-budget
      key: header:{BUDGET_HEADER}
      per_hour: {BUDGET_PER_HOUR}
  backend:
    redis:
      url: {redis_url}
      timeout: 500ms
      connect_timeout: 500ms
      key_prefix: "{prefix}"
  fault_tolerant: true
audit:
  path: {audit}
shutdown:
  drain_time: 1s
"#,
            audit = audit_dir.display()
        );
        let process = FhirgateProcess::serve(BIN, &yaml).await.unwrap();
        Replica {
            process,
            audit_dir: audit_dir.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/fhir{path}", self.process.address)
    }

    /// The value of one unlabelled series on this replica's `/metrics`.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> Option<f64> {
        let text = http
            .get(format!("{}/metrics", self.process.address))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Every audit line this replica wrote, as text.
    pub fn audit_text(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.audit_dir) {
            for e in entries.flatten() {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }
}

/// `fhirgate audit verify DIR`: the hash chain is intact.
pub fn audit_verify(dir: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
