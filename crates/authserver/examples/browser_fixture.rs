//! Starts the authorization server on 127.0.0.1:0 (nested under `/auth`) with a seeded
//! practitioner, two patients and a public client whose redirect URI is loopback, then
//! prints one JSON line describing it. Used by `tests/browser` (Playwright + Chromium).

use fhirgate_authserver::{AuthConfig, AuthServer, ClientKind, NewClient, NewUser, PatientEntry};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let issuer = format!("{origin}/auth");
    let fhir_base = format!("{origin}/fhir");
    let server = AuthServer::open(AuthConfig::new(
        dir.path().join("auth.sqlite"),
        &issuer,
        &fhir_base,
    ))?;
    server.add_user(NewUser {
        username: "drbob".into(),
        password: "bob-password".into(),
        display_name: Some("Dr Bob".into()),
        fhir_user: Some("Practitioner/d1".into()),
    })?;
    server.upsert_patients(&[
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
    ])?;
    server.add_client(NewClient {
        client_id: Some("browser-app".into()),
        name: "Browser test app".into(),
        kind: ClientKind::Public,
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        allowed_scopes: vec![],
        jwks: None,
        jwks_url: None,
        launch_url: None,
        client_secret: None,
    })?;
    println!(
        "{}",
        serde_json::json!({
            "issuer": issuer,
            "fhir_base": fhir_base,
            "client_id": "browser-app",
            "username": "drbob",
            "password": "bob-password",
        })
    );
    let router = axum::Router::new().nest("/auth", server.router());
    axum::serve(listener, router).await?;
    drop(dir);
    Ok(())
}
