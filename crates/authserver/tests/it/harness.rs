//! Test harness: the router nested under `/auth` on 127.0.0.1:0 with seeded users,
//! patients and clients; a cookie-keeping HTTP client that walks the pages like a
//! browser; PKCE and client-assertion helpers.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirgate_authserver::{
    AuthConfig, AuthServer, ClientKind, ManualClock, NewClient, NewUser, PatientEntry,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const PUBLIC: &str = "app-public";
pub const PUBLIC2: &str = "app-public-2";
pub const CONF: &str = "app-conf";
pub const CONF_SECRET: &str = "conf-secret-0123456789";
pub const BACKEND_RS: &str = "backend-rs384";
pub const BACKEND_ES: &str = "backend-es384";
pub const REDIRECT: &str = "https://app.example/cb";
pub const LOOPBACK: &str = "http://127.0.0.1/cb";

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// A client's signing key for `private_key_jwt`.
pub enum ClientKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl ClientKey {
    pub fn rsa() -> Self {
        Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }
    pub fn ec384() -> Self {
        Self::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap())
    }
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Self::Rsa(k) => {
                let pk = k.public_key();
                json!({"kty": "RSA", "kid": kid, "alg": "RS384",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero())})
            }
            Self::Ec(k) => {
                let point = k.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                json!({"kty": "EC", "kid": kid, "crv": "P-384", "alg": "ES384",
                    "x": b64(x), "y": b64(y)})
            }
        }
    }
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RS384",
            Self::Ec(_) => "ES384",
        }
    }
    /// Signs a compact JWS with an explicit header.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = match self {
            Self::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA384,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Self::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

pub struct Harness {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub issuer: String,
    pub fhir_base: String,
    pub token_url: String,
    pub server: AuthServer,
    pub clock: Arc<ManualClock>,
    pub rs_key: ClientKey,
    pub es_key: ClientKey,
    pub jwks_url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// [`start`] with the configuration adjusted before the server opens.
pub async fn start_with(tweak: impl FnOnce(&mut AuthConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{origin}/auth");
    let fhir_base = format!("{origin}/fhir");
    let clock = ManualClock::new();
    let mut cfg = AuthConfig::new(dir.path().join("auth.sqlite"), &issuer, &fhir_base);
    cfg.clock = clock.clone();
    cfg.admin_token = Some(ADMIN_TOKEN.into());
    cfg.cors_origins = vec!["https://cors.example".into()];
    tweak(&mut cfg);
    let server = AuthServer::open(cfg).unwrap();

    let es_key = ClientKey::ec384();
    let es_jwks = json!({"keys": [es_key.jwk("es-1")]});
    let jwks_origin = serve(axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = es_jwks.clone();
            async move { axum::Json(body) }
        }),
    ))
    .await;
    let jwks_url = format!("{jwks_origin}/jwks.json");
    let rs_key = ClientKey::rsa();
    seed(&server, &rs_key, &jwks_url);

    let router = axum::Router::new().nest("/auth", server.router());
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Harness {
        token_url: format!("{issuer}/token"),
        origin,
        issuer,
        fhir_base,
        server,
        clock,
        rs_key,
        es_key,
        jwks_url,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        _dir: dir,
    }
}

fn seed(server: &AuthServer, rs_key: &ClientKey, jwks_url: &str) {
    server
        .add_user(NewUser {
            username: "alice".into(),
            password: "alice-password".into(),
            display_name: Some("Alice Smith".into()),
            fhir_user: Some("Patient/p1".into()),
        })
        .unwrap();
    server
        .add_user(NewUser {
            username: "drbob".into(),
            password: "bob-password".into(),
            display_name: Some("Dr Bob".into()),
            fhir_user: Some("Practitioner/d1".into()),
        })
        .unwrap();
    server
        .upsert_patients(&[
            PatientEntry {
                id: "p1".into(),
                display_name: "Alice Smith".into(),
                birth_date: Some("1980-01-01".into()),
            },
            PatientEntry {
                id: "p2".into(),
                display_name: "Carl Jones".into(),
                birth_date: None,
            },
        ])
        .unwrap();
    let public = |id: &str| NewClient {
        client_id: Some(id.into()),
        name: format!("Test app {id}"),
        kind: ClientKind::Public,
        redirect_uris: vec![REDIRECT.into(), LOOPBACK.into()],
        allowed_scopes: vec![],
        jwks: None,
        jwks_url: None,
        launch_url: Some("https://app.example/launch".into()),
        client_secret: None,
    };
    server.add_client(public(PUBLIC)).unwrap();
    server.add_client(public(PUBLIC2)).unwrap();
    let created = server
        .add_client(NewClient {
            client_id: Some(CONF.into()),
            kind: ClientKind::ConfidentialSymmetric,
            client_secret: Some(CONF_SECRET.into()),
            allowed_scopes: vec![
                "openid".into(),
                "fhirUser".into(),
                "launch".into(),
                "launch/patient".into(),
                "offline_access".into(),
                "patient/*.rs".into(),
                "user/*.rs".into(),
            ],
            ..public(CONF)
        })
        .unwrap();
    assert_eq!(created.client_secret.as_deref(), Some(CONF_SECRET));
    server
        .add_client(NewClient {
            client_id: Some(BACKEND_RS.into()),
            name: "Backend RS384".into(),
            kind: ClientKind::ConfidentialAsymmetric,
            redirect_uris: vec![],
            allowed_scopes: vec!["system/*.rs".into()],
            jwks: Some(json!({"keys": [rs_key.jwk("rs-1")]})),
            jwks_url: None,
            launch_url: None,
            client_secret: None,
        })
        .unwrap();
    server
        .add_client(NewClient {
            client_id: Some(BACKEND_ES.into()),
            name: "Backend ES384".into(),
            kind: ClientKind::ConfidentialAsymmetric,
            redirect_uris: vec![],
            allowed_scopes: vec!["system/Observation.rs".into(), "system/Patient.rs".into()],
            jwks: None,
            jwks_url: Some(jwks_url.into()),
            launch_url: None,
            client_secret: None,
        })
        .unwrap();
}

/// PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = b64(&rand::random::<[u8; 32]>());
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

pub fn query_param(location: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(location).ok()?;
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A browser: keeps cookies, never follows redirects on its own.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The parameters of a good authorization request; tests change one thing at a time.
pub fn auth_params(
    h: &Harness,
    client: &str,
    scope: &str,
    challenge: &str,
) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "state-123"),
        ("aud", &h.fhir_base),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn set(params: &mut Vec<(String, String)>, key: &str, value: Option<&str>) {
    params.retain(|(k, _)| k != key);
    if let Some(v) = value {
        params.push((key.into(), v.into()));
    }
}

pub struct Walk {
    /// The final redirect to the client.
    pub location: String,
}

/// Drives the pages: authorize → login → (picker) → consent. `untick` scopes are left
/// unchecked; `pick` is the patient chosen if a picker shows up.
pub async fn walk(
    h: &Harness,
    params: &[(String, String)],
    user: (&str, &str),
    untick: &[&str],
    pick: Option<&str>,
) -> Walk {
    let b = browser();
    let resp = b
        .get(format!("{}/authorize", h.issuer))
        .query(params)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "authorize should redirect to the pages");
    let mut next = location(&resp);
    if !next.starts_with(&format!("{}/interact/", h.issuer)) {
        return Walk { location: next };
    }
    loop {
        let page = b.get(&next).send().await.unwrap();
        if page.status() == 303 {
            return Walk {
                location: location(&page),
            };
        }
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let csrf = csrf_of(&html);
        let (action, form): (&str, Vec<(String, String)>) = if html.contains("id=\"password\"") {
            (
                "/login",
                vec![
                    ("csrf".into(), csrf),
                    ("username".into(), user.0.into()),
                    ("password".into(), user.1.into()),
                ],
            )
        } else if html.contains("name=\"patient\"") {
            (
                "/patient",
                vec![
                    ("csrf".into(), csrf),
                    ("patient".into(), pick.expect("picker shown").into()),
                ],
            )
        } else {
            let mut form = vec![("csrf".into(), csrf), ("decision".into(), "allow".into())];
            for value in scope_values(&html) {
                if !untick.contains(&value.as_str()) {
                    form.push(("scope".into(), value));
                }
            }
            ("/consent", form)
        };
        let resp = b
            .post(format!("{next}{action}"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{action} should redirect");
        let loc = location(&resp);
        if action == "/consent" {
            return Walk { location: loc };
        }
        next = loc;
    }
}

/// The `value`s of the consent page's scope checkboxes.
pub fn scope_values(html: &str) -> Vec<String> {
    html.split("name=\"scope\"")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find("value=\"")? + 7;
            let end = rest[start..].find('"')?;
            Some(
                rest[start..start + end]
                    .replace("&#x2f;", "/")
                    .replace("&#x2F;", "/")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}

/// Exchanges a code as the public client.
pub async fn exchange(h: &Harness, client: &str, code: &str, verifier: &str) -> reqwest::Response {
    h.http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("client_id", client),
        ])
        .send()
        .await
        .unwrap()
}

/// A full standalone launch for alice; returns (token response JSON, verifier).
pub async fn alice_tokens(h: &Harness, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let params = auth_params(h, PUBLIC, scope, &challenge);
    let w = walk(h, &params, ("alice", "alice-password"), &[], None).await;
    let code = query_param(&w.location, "code").expect("code");
    let resp = exchange(h, PUBLIC, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A code for alice, not yet exchanged; returns (code, verifier, challenge).
pub async fn alice_code(h: &Harness, client: &str) -> (String, String, String) {
    let (verifier, challenge) = pkce();
    let params = auth_params(
        h,
        client,
        "launch/patient openid fhirUser offline_access patient/*.rs",
        &challenge,
    );
    let w = walk(h, &params, ("alice", "alice-password"), &[], None).await;
    (
        query_param(&w.location, "code").expect("code"),
        verifier,
        challenge,
    )
}

/// A client assertion with overridable claims and header members.
pub fn assertion(
    h: &Harness,
    key: &ClientKey,
    client: &str,
    kid: &str,
    tweak: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let now = fhirgate_authserver::Clock::now(&*h.clock);
    let mut header = json!({"alg": key.alg(), "kid": kid, "typ": "JWT"});
    let mut claims = json!({
        "iss": client, "sub": client, "aud": h.token_url,
        "exp": now + 240, "jti": b64(&rand::random::<[u8; 16]>()),
    });
    tweak(&mut header, &mut claims);
    key.sign(&header, &claims)
}

pub async fn client_credentials(h: &Harness, assertion: &str, scope: &str) -> reqwest::Response {
    h.http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap()
}

/// Decodes a JWT's header and claims without verifying.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

pub async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

pub async fn introspect_as_conf(h: &Harness, token: &str) -> Value {
    let resp = h
        .http
        .post(format!("{}/introspect", h.issuer))
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
