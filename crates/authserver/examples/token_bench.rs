//! Load figures for the token endpoint, over real HTTP on 127.0.0.1:0:
//! authorization_code exchanges/s (codes prepared beforehand through the consent pages)
//! and client_credentials exchanges/s (fresh RS384 assertions, pre-signed).
//!
//! `cargo run --release -p fhirgate-authserver --example token_bench [-- N CONCURRENCY]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirgate_authserver::{
    AuthConfig, AuthServer, ClientKind, Clock, ManualClock, NewClient, NewUser, PatientEntry,
};
use serde_json::json;
use sha2::{Digest, Sha256};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    html.find(marker)
        .map(|i| i + marker.len())
        .and_then(|s| html[s..].find('"').map(|e| html[s..s + e].to_string()))
        .unwrap_or_default()
}

async fn run_parallel<F, Fut>(
    items: Vec<String>,
    conc: usize,
    f: F,
) -> Result<(usize, Duration), BoxError>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let f = Arc::new(f);
    let queue = Arc::new(tokio::sync::Mutex::new(items));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (q, f) = (queue.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            loop {
                let next = q.lock().await.pop();
                match next {
                    Some(item) => ok += usize::from(f(item).await),
                    None => return ok,
                }
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await?;
    }
    Ok((ok, start.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1000);
    let conc = args.get(1).copied().unwrap_or(8);
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let issuer = format!("{origin}/auth");
    let token_url = format!("{issuer}/token");
    let clock = ManualClock::new();
    let mut cfg = AuthConfig::new(
        dir.path().join("auth.sqlite"),
        &issuer,
        format!("{origin}/fhir"),
    );
    // Frozen time keeps the prepared codes (60 s) and assertions (5 min) valid.
    cfg.clock = clock.clone();
    let server = AuthServer::open(cfg)?;
    server.add_user(NewUser {
        username: "alice".into(),
        password: "alice-password".into(),
        display_name: None,
        fhir_user: Some("Patient/p1".into()),
    })?;
    server.upsert_patients(&[PatientEntry {
        id: "p1".into(),
        display_name: "Alice".into(),
        birth_date: None,
    }])?;
    let redirect = "https://app.example/cb";
    server.add_client(NewClient {
        client_id: Some("app".into()),
        name: "app".into(),
        kind: ClientKind::Public,
        redirect_uris: vec![redirect.into()],
        allowed_scopes: vec![],
        jwks: None,
        jwks_url: None,
        launch_url: None,
        client_secret: None,
    })?;
    let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
    let pk = key.public_key();
    let jwk = json!({"kty": "RSA", "kid": "k1", "n": b64(pk.modulus().big_endian_without_leading_zero()), "e": b64(pk.exponent().big_endian_without_leading_zero())});
    server.add_client(NewClient {
        client_id: Some("backend".into()),
        name: "backend".into(),
        kind: ClientKind::ConfidentialAsymmetric,
        redirect_uris: vec![],
        allowed_scopes: vec!["system/*.rs".into()],
        jwks: Some(json!({"keys": [jwk]})),
        jwks_url: None,
        launch_url: None,
        client_secret: None,
    })?;
    let router = axum::Router::new().nest("/auth", server.router());
    tokio::spawn(async move { axum::serve(listener, router).await });

    // Prepare codes through the real pages, one signed-in browser session.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let verifier = b64(&rand::random::<[u8; 32]>());
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    let fhir = format!("{origin}/fhir");
    let params = [
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", redirect),
        ("scope", "launch/patient openid fhirUser patient/*.rs"),
        ("state", "s"),
        ("aud", fhir.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let prep = Instant::now();
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let r = browser
            .get(format!("{issuer}/authorize"))
            .query(&params)
            .send()
            .await?;
        let interact = location(&r);
        let mut html = browser.get(&interact).send().await?.text().await?;
        if i == 0 {
            let r = browser
                .post(format!("{interact}/login"))
                .form(&[
                    ("csrf", csrf_of(&html).as_str()),
                    ("username", "alice"),
                    ("password", "alice-password"),
                ])
                .send()
                .await?;
            let _ = r.text().await;
            html = browser.get(&interact).send().await?.text().await?;
        }
        let r = browser
            .post(format!("{interact}/consent"))
            .form(&[
                ("csrf", csrf_of(&html).as_str()),
                ("decision", "allow"),
                ("scope", "launch/patient"),
                ("scope", "openid"),
                ("scope", "fhirUser"),
                ("scope", "patient/*.rs"),
            ])
            .send()
            .await?;
        let loc = url::Url::parse(&location(&r))?;
        let code = loc
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .ok_or("no code")?;
        codes.push(code);
    }
    eprintln!(
        "prepared {n} codes through the pages in {:.1?}",
        prep.elapsed()
    );

    let http = reqwest::Client::new();
    let (h, t, v) = (http.clone(), token_url.clone(), verifier.clone());
    let (ok, took) = run_parallel(codes, conc, move |code| {
        let (h, t, v) = (h.clone(), t.clone(), v.clone());
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("code_verifier", v.as_str()),
                ("client_id", "app"),
            ];
            matches!(h.post(&t).form(&form).send().await, Ok(r) if r.status() == 200)
        }
    })
    .await?;
    println!(
        "authorization_code: {ok}/{n} ok in {took:.2?} = {:.0} exchanges/s (concurrency {conc})",
        ok as f64 / took.as_secs_f64()
    );

    let now = clock.now();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut assertions = Vec::with_capacity(n);
    for _ in 0..n {
        let header = json!({"alg": "RS384", "kid": "k1", "typ": "JWT"});
        let claims = json!({"iss": "backend", "sub": "backend", "aud": token_url, "exp": now + 240, "jti": b64(&rand::random::<[u8; 16]>())});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(
            &signature::RSA_PKCS1_SHA384,
            &rng,
            input.as_bytes(),
            &mut sig,
        )
        .map_err(|e| e.to_string())?;
        assertions.push(format!("{input}.{}", b64(&sig)));
    }
    let (h, t) = (http.clone(), token_url.clone());
    let (ok, took) = run_parallel(assertions, conc, move |a| {
        let (h, t) = (h.clone(), t.clone());
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.as_str()),
            ];
            matches!(h.post(&t).form(&form).send().await, Ok(r) if r.status() == 200)
        }
    })
    .await?;
    println!(
        "client_credentials: {ok}/{n} ok in {took:.2?} = {:.0} exchanges/s (concurrency {conc})",
        ok as f64 / took.as_secs_f64()
    );
    Ok(())
}
