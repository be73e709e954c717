//! `demo.json`: everything a script needs to use the running demo (URLs, users, clients,
//! secrets, key files), rewritten on every start. It is also where generated passwords and
//! the client secret are remembered between runs, since the authorization store keeps only
//! their hashes. The format is documented in `docs/demo.md`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "demo.json";
/// Bumped when a field changes meaning; additions keep the number.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub urls: Urls,
    pub files: Files,
    pub users: Vec<DemoUser>,
    pub clients: Vec<DemoClient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Urls {
    pub origin: String,
    pub fhir_base: String,
    pub issuer: String,
    pub smart_configuration: String,
    pub openid_configuration: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks: String,
    pub app: String,
    pub healthz: String,
    pub readyz: String,
    /// Absent until the gateway exposes metrics in the demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Files {
    pub data_dir: PathBuf,
    pub fhir_store: PathBuf,
    pub auth_store: PathBuf,
    /// Absent until the gateway writes an audit log in the demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub role: String,
    #[serde(default)]
    pub fhir_user: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoClient {
    pub client_id: String,
    /// Shown to users on the consent page.
    pub name: String,
    /// `public`, `confidential-symmetric` or `confidential-asymmetric`.
    pub kind: String,
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ClientKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientKey {
    pub kid: String,
    pub alg: String,
    pub private_key_pem: PathBuf,
    pub public_jwks: PathBuf,
}

impl Manifest {
    /// The manifest left by an earlier run, if any. A damaged file is not an error: the
    /// demo then issues fresh passwords and secrets, which the manifest exists to recover.
    pub fn read(data_dir: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(data_dir.join(FILE_NAME)).ok()?;
        match serde_json::from_str(&text) {
            Ok(m) => Some(m),
            Err(err) => {
                tracing::warn!(error = %err, "ignoring an unreadable {FILE_NAME}; new passwords will be issued");
                None
            }
        }
    }

    pub fn password_of(&self, username: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.username == username)
            .map(|u| u.password.as_str())
    }

    pub fn secret_of(&self, client_id: &str) -> Option<&str> {
        self.clients
            .iter()
            .find(|c| c.client_id == client_id)
            .and_then(|c| c.client_secret.as_deref())
    }

    /// Written owner-only: it holds passwords and a client secret.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<PathBuf> {
        let path = data_dir.join(FILE_NAME);
        let text = serde_json::to_string_pretty(self)?;
        super::files::write_private(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}
