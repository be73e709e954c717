//! First-run content, applied idempotently on every start: sample data in the FHIR store,
//! the picker's patient list, demo users and demo clients in the authorization store.
//! Whatever already matches is left alone (so sessions and refresh tokens survive a
//! restart); whatever drifted, for example a redirect URI after the origin changed, is
//! registered again.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use fhirgate_authserver::{AuthServer, ClientKind, NewClient, NewUser, PatientEntry};
use fhirgate_store::Store;
use fhirgate_store::generate::{GenerateOptions, generate_into};
use fhirgate_store::search::{SearchRequest, search};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::backend_key::{self, BackendKey};
use super::manifest::{ClientKey, DemoClient, DemoUser, Manifest};

/// Same seed every time, so every demo shows the same patients.
const SEED: u64 = 1;

pub const PUBLIC_CLIENT: &str = "demo-app";
pub const CONFIDENTIAL_CLIENT: &str = "demo-confidential";
pub const BACKEND_CLIENT: &str = "demo-backend";
pub const PATIENT_USER: &str = "patient";
pub const PRACTITIONER_USER: &str = "practitioner";

/// What the public app may be granted; the app asks for a subset (see `app_scope`).
const PUBLIC_SCOPES: &str =
    "launch/patient openid fhirUser offline_access online_access patient/*.rs patient/*.read";
const CONFIDENTIAL_SCOPES: &str = "launch launch/patient openid fhirUser offline_access online_access patient/*.rs patient/*.read user/*.rs user/*.read";
pub const BACKEND_SCOPES: &str = "system/*.rs system/*.read";
/// Loopback redirect URIs match on any port (RFC 8252), so a script can listen anywhere.
const CONFIDENTIAL_REDIRECT: &str = "http://127.0.0.1/callback";

/// The scope the demo app requests at launch.
pub fn app_scope() -> String {
    "launch/patient openid fhirUser offline_access patient/*.rs".to_owned()
}

/// Present while sample data is being generated. Generation commits in chunks, so a run
/// stopped half-way leaves a store that is not empty but not complete either; the marker
/// tells the next run to finish the job (generated resources have fixed ids, so writing
/// them again is harmless).
const GENERATING_MARKER: &str = ".generating";

/// Fills an empty store with generated patients; returns whether it did.
pub fn ensure_data(store: &Store, dir: &Path, patients: usize) -> anyhow::Result<bool> {
    let marker = dir.join(GENERATING_MARKER);
    if !store.counts()?.is_empty() && !marker.exists() {
        return Ok(false);
    }
    std::fs::write(&marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    println!("generating sample data for {patients} patients (seed {SEED})...");
    let summary = generate_into(
        store,
        GenerateOptions {
            patients,
            seed: SEED,
        },
        &mut |n| {
            if tty {
                let mut err = std::io::stderr();
                let _ = write!(err, "\r\x1b[2K  {n} resources stored");
                let _ = err.flush();
            }
        },
    )
    .context("generating sample data")?;
    if tty {
        eprintln!();
    }
    std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    println!(
        "generated {} resources in {:.1}s",
        summary.total(),
        start.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// The store's resources of one type, in storage order, as parsed JSON.
fn all_of(store: &Store, rtype: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let query = format!("_count=1000&_offset={}", out.len());
        let page = store.read(|c| search(c, &SearchRequest::new(rtype, &query)))?;
        for stored in &page.matches {
            if let Some(body) = &stored.body {
                out.push(serde_json::from_str(body)?);
            }
        }
        if !page.has_next || page.matches.is_empty() {
            return Ok(out);
        }
    }
}

fn display_name(resource: &Value) -> String {
    let name = &resource["name"][0];
    if let Some(text) = name["text"].as_str() {
        return text.to_owned();
    }
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    parts.extend(name["family"].as_str());
    if parts.is_empty() {
        resource["id"].as_str().unwrap_or("?").to_owned()
    } else {
        parts.join(" ")
    }
}

/// Mirrors the store's patients into the picker; returns the first one (the patient user's).
pub fn fill_picker(store: &Store, auth: &AuthServer) -> anyhow::Result<Option<PatientEntry>> {
    let entries: Vec<PatientEntry> = all_of(store, "Patient")?
        .iter()
        .filter_map(|p| {
            Some(PatientEntry {
                id: p["id"].as_str()?.to_owned(),
                display_name: display_name(p),
                birth_date: p["birthDate"].as_str().map(str::to_owned),
            })
        })
        .collect();
    auth.upsert_patients(&entries)
        .context("filling the patient picker")?;
    Ok(entries.into_iter().next())
}

fn first_practitioner(store: &Store) -> anyhow::Result<Option<(String, String)>> {
    Ok(all_of(store, "Practitioner")?.first().and_then(|p| {
        let id = p["id"].as_str()?.to_owned();
        Some((id, display_name(p)))
    }))
}

fn new_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Makes sure the demo users exist with the passwords recorded in `previous`.
pub fn users(
    store: &Store,
    auth: &AuthServer,
    patient: Option<&PatientEntry>,
    previous: Option<&Manifest>,
) -> anyhow::Result<Vec<DemoUser>> {
    let practitioner = first_practitioner(store)?;
    let wanted = [
        DemoUser {
            username: PATIENT_USER.into(),
            password: String::new(),
            role: "patient: sees only their own record".into(),
            fhir_user: patient.map(|p| format!("Patient/{}", p.id)),
            display_name: patient.map(|p| p.display_name.clone()),
        },
        DemoUser {
            username: PRACTITIONER_USER.into(),
            password: String::new(),
            role: "practitioner: picks any patient".into(),
            fhir_user: practitioner
                .as_ref()
                .map(|(id, _)| format!("Practitioner/{id}")),
            display_name: practitioner.map(|(_, name)| name),
        },
    ];
    let existing = auth.list_users()?;
    let mut out = Vec::new();
    for mut user in wanted {
        let remembered = previous.and_then(|m| m.password_of(&user.username));
        let current = existing.iter().find(|u| u.username == user.username);
        let up_to_date = current.is_some_and(|u| u.fhir_user == user.fhir_user);
        user.password = match remembered {
            Some(p) if up_to_date => p.to_owned(),
            _ => {
                if current.is_some() {
                    auth.remove_user(&user.username)?;
                }
                let password = remembered.map_or_else(|| new_secret(16), str::to_owned);
                auth.add_user(NewUser {
                    username: user.username.clone(),
                    password: password.clone(),
                    display_name: user.display_name.clone(),
                    fhir_user: user.fhir_user.clone(),
                })
                .with_context(|| format!("adding demo user {}", user.username))?;
                password
            }
        };
        out.push(user);
    }
    Ok(out)
}

/// Makes sure the three demo clients are registered as they should be for `origin`.
pub fn clients(
    auth: &AuthServer,
    origin: &str,
    key: &BackendKey,
    previous: Option<&Manifest>,
) -> anyhow::Result<Vec<DemoClient>> {
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let secret = previous
        .and_then(|m| m.secret_of(CONFIDENTIAL_CLIENT))
        .map_or_else(|| new_secret(32), str::to_owned);
    let wanted = [
        (
            DemoClient {
                client_id: PUBLIC_CLIENT.into(),
                name: "fhirgate demo app".into(),
                kind: ClientKind::Public.as_str().into(),
                purpose: "the browser app at /app/ (standalone launch, PKCE)".into(),
                client_secret: None,
                redirect_uris: vec![format!("{origin}{}/", crate::cli::app::APP_PATH)],
                scopes: split(PUBLIC_SCOPES),
                key: None,
            },
            ClientKind::Public,
            None,
        ),
        (
            DemoClient {
                client_id: CONFIDENTIAL_CLIENT.into(),
                name: "fhirgate demo server-side app".into(),
                kind: ClientKind::ConfidentialSymmetric.as_str().into(),
                purpose: "a server-side app (client_secret_basic)".into(),
                client_secret: Some(secret),
                redirect_uris: vec![CONFIDENTIAL_REDIRECT.into()],
                scopes: split(CONFIDENTIAL_SCOPES),
                key: None,
            },
            ClientKind::ConfidentialSymmetric,
            None,
        ),
        (
            DemoClient {
                client_id: BACKEND_CLIENT.into(),
                name: "fhirgate demo backend service".into(),
                kind: ClientKind::ConfidentialAsymmetric.as_str().into(),
                purpose: "a backend service (client_credentials, private_key_jwt)".into(),
                client_secret: None,
                redirect_uris: Vec::new(),
                scopes: split(BACKEND_SCOPES),
                key: Some(ClientKey {
                    kid: key.kid.clone(),
                    alg: backend_key::ALG.into(),
                    private_key_pem: key.private_key_pem.clone(),
                    public_jwks: key.public_jwks.clone(),
                }),
            },
            ClientKind::ConfidentialAsymmetric,
            Some(key.jwks.clone()),
        ),
    ];
    let existing = auth.list_clients()?;
    let mut out = Vec::new();
    for (client, kind, jwks) in wanted {
        let up_to_date = existing.iter().any(|c| {
            c.client_id == client.client_id
                && c.name == client.name
                && c.kind == kind
                && c.redirect_uris == client.redirect_uris
                && c.allowed_scopes == client.scopes
                && c.jwks == jwks
                && c.secret_hash
                    == client
                        .client_secret
                        .as_ref()
                        .map(|s| Sha256::digest(s.as_bytes()).to_vec())
        });
        if !up_to_date {
            // Removing revokes the client's grants, which is right: they were issued for
            // a registration that no longer holds.
            auth.remove_client(&client.client_id)?;
            auth.add_client(NewClient {
                client_id: Some(client.client_id.clone()),
                name: client.name.clone(),
                kind,
                redirect_uris: client.redirect_uris.clone(),
                allowed_scopes: client.scopes.clone(),
                jwks,
                jwks_url: None,
                launch_url: None,
                client_secret: client.client_secret.clone(),
            })
            .with_context(|| format!("registering demo client {}", client.client_id))?;
        }
        out.push(client);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhirgate_authserver::AuthConfig;

    fn open_auth(dir: &std::path::Path, origin: &str) -> AuthServer {
        AuthServer::open(AuthConfig::new(
            dir.join("auth.sqlite"),
            format!("{origin}/auth"),
            format!("{origin}/fhir"),
        ))
        .unwrap()
    }

    struct Run {
        users: Vec<DemoUser>,
        clients: Vec<DemoClient>,
        manifest: Manifest,
    }

    fn seed_once(dir: &std::path::Path, origin: &str, previous: Option<&Manifest>) -> Run {
        let store = Store::open(dir.join("store.sqlite")).unwrap();
        ensure_data(&store, dir, 2).unwrap();
        let auth = open_auth(dir, origin);
        let first = fill_picker(&store, &auth).unwrap();
        let users = users(&store, &auth, first.as_ref(), previous).unwrap();
        let key = backend_key::load_or_create(dir).unwrap();
        let clients = clients(&auth, origin, &key, previous).unwrap();
        let manifest = Manifest {
            format_version: 1,
            urls: serde_json::from_value(serde_json::json!({
                "origin": origin, "fhir_base": "", "issuer": "", "smart_configuration": "",
                "openid_configuration": "", "authorization_endpoint": "", "token_endpoint": "",
                "jwks": "", "app": "", "healthz": "", "readyz": ""
            }))
            .unwrap(),
            files: serde_json::from_value(serde_json::json!({
                "data_dir": dir, "fhir_store": dir, "auth_store": dir
            }))
            .unwrap(),
            users: users.clone(),
            clients: clients.clone(),
        };
        Run {
            users,
            clients,
            manifest,
        }
    }

    #[test]
    fn seeding_again_keeps_passwords_secrets_and_registrations() {
        let dir = tempfile::tempdir().unwrap();
        let origin = "http://127.0.0.1:8080";
        let first = seed_once(dir.path(), origin, None);
        assert_eq!(first.users[0].fhir_user.as_deref(), Some("Patient/pat-0"));
        assert!(
            first.users[1]
                .fhir_user
                .as_deref()
                .is_some_and(|f| f.starts_with("Practitioner/"))
        );
        let auth = open_auth(dir.path(), origin);
        let token = auth
            .mint_token(fhirgate_authserver::MintRequest {
                client_id: BACKEND_CLIENT.into(),
                scope: "system/*.rs".into(),
                patient: None,
                user: None,
                expires_in: std::time::Duration::from_secs(60),
            })
            .unwrap();
        assert!(!token.access_token.is_empty());

        let second = seed_once(dir.path(), origin, Some(&first.manifest));
        let passwords = |r: &Run| {
            r.users
                .iter()
                .map(|u| u.password.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(passwords(&first), passwords(&second));
        assert_eq!(
            first.manifest.secret_of(CONFIDENTIAL_CLIENT),
            second.manifest.secret_of(CONFIDENTIAL_CLIENT)
        );
        assert_eq!(auth.list_users().unwrap().len(), 2);
        assert_eq!(auth.list_clients().unwrap().len(), 3);
        assert_eq!(auth.search_patients("", 100).unwrap().len(), 2);
    }

    #[test]
    fn an_interrupted_generation_is_finished_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.sqlite")).unwrap();
        assert!(ensure_data(&store, dir.path(), 2).unwrap());
        assert!(!ensure_data(&store, dir.path(), 2).unwrap());
        std::fs::write(dir.path().join(GENERATING_MARKER), b"").unwrap();
        assert!(ensure_data(&store, dir.path(), 2).unwrap());
        assert!(!dir.path().join(GENERATING_MARKER).exists());
    }

    #[test]
    fn a_new_origin_moves_the_app_redirect_uri() {
        let dir = tempfile::tempdir().unwrap();
        let first = seed_once(dir.path(), "http://127.0.0.1:8080", None);
        let moved = seed_once(dir.path(), "http://192.0.2.7:9000", Some(&first.manifest));
        let auth = open_auth(dir.path(), "http://192.0.2.7:9000");
        let app = auth
            .list_clients()
            .unwrap()
            .into_iter()
            .find(|c| c.client_id == PUBLIC_CLIENT)
            .unwrap();
        assert_eq!(
            app.redirect_uris,
            vec!["http://192.0.2.7:9000/app/".to_owned()]
        );
        assert_eq!(moved.clients[0].redirect_uris, app.redirect_uris);
    }

    #[test]
    fn lost_passwords_are_replaced_rather_than_printed_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let first = seed_once(dir.path(), "http://127.0.0.1:8080", None);
        let again = seed_once(dir.path(), "http://127.0.0.1:8080", None);
        assert_ne!(first.users[0].password, again.users[0].password);
        let auth = open_auth(dir.path(), "http://127.0.0.1:8080");
        assert_eq!(auth.list_users().unwrap().len(), 2);
    }
}
