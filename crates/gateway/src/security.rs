//! What the authenticate, authorize and verify phases share, built once from the config:
//! the token verifier, the authorization policy and switches, and the SMART document.

use std::sync::Arc;

use bytes::Bytes;
use fhirgate_smart::Policy;
use fhirgate_tokens::Verifier;
use serde_json::Value;

use crate::config::{GatewayConfig, base_string};
use crate::security_config::{AuthMode, AuthorizationConfig};
use crate::upstream::BuildError;

pub(crate) struct Security {
    /// `None` when authentication is disabled: nothing is checked at all.
    pub(crate) verifier: Option<Verifier>,
    pub(crate) policy: Policy,
    pub(crate) settings: AuthorizationConfig,
    /// `realm` of every `WWW-Authenticate` challenge: the public FHIR base.
    pub(crate) realm: Arc<str>,
    /// Upstream base without a trailing slash, for Bundles that reach verification
    /// unrewritten (over `limits.bundle_rewrite_max`).
    pub(crate) upstream_base: String,
    /// The SMART configuration, serialised once.
    pub(crate) smart_document: Option<Bytes>,
    pub(crate) smart_value: Option<Arc<Value>>,
    /// Token ids revoked at the authorization server (`auth.revocation`; revocation.rs).
    /// Shared so a reload with the same `auth` section can keep the running subscriber.
    pub(crate) revocations: Option<Arc<crate::revocation::Revocations>>,
}

impl Security {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, BuildError> {
        let auth = &config.auth;
        let verifier = match auth.mode {
            AuthMode::Disabled => {
                tracing::warn!(
                    "auth.mode is disabled: every FHIR request is forwarded without a token check"
                );
                None
            }
            _ if auth.issuers.is_empty() => return Err(BuildError::NoIssuers),
            _ => Some(Verifier::new(auth.issuers.clone(), auth.clock.clone())),
        };
        let public = base_string(&config.public_base_url);
        let settings = config.authorization.clone();
        // Responses are verified after the base-URL rewrite, except Bundles too large to
        // rewrite: both bases name this server.
        let policy = Policy {
            hide_existence: settings.hide_existence,
            inject_patient: settings.inject_patient,
            ..Policy::default()
        }
        .with_bases([public.clone(), base_string(&config.upstream.url)]);
        let smart_document = config
            .smart_configuration
            .as_ref()
            .and_then(|doc| serde_json::to_vec(doc).ok())
            .map(Bytes::from);
        // Notices only matter when tokens are checked at all.
        let revocations = auth
            .revocation
            .as_ref()
            .filter(|_| verifier.is_some())
            .map(|r| Arc::new(crate::revocation::Revocations::start(r)));
        Ok(Security {
            verifier,
            policy,
            settings,
            realm: Arc::from(public),
            upstream_base: base_string(&config.upstream.url),
            smart_document,
            smart_value: config.smart_configuration.clone().map(Arc::new),
            revocations,
        })
    }
}
