//! SMART discovery without a token: the well-known document from config and `/metadata`
//! with the `oauth-uris` security extension; and the start-up refusal without issuers.

use fhirgate_gateway::{BuildError, Gateway};
use fhirgate_testkit::gateway;
use serde_json::json;

use crate::Env;

const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

fn smart_document() -> serde_json::Value {
    json!({
        "issuer": "https://as.example/auth",
        "authorization_endpoint": "https://as.example/auth/authorize",
        "token_endpoint": "https://as.example/auth/token",
        "capabilities": ["launch-standalone", "permission-v2"],
        "code_challenge_methods_supported": ["S256"]
    })
}

#[tokio::test]
async fn smart_configuration_and_metadata_are_reachable_without_a_token() {
    let env = Env::start_with(|c| c.smart_configuration = Some(smart_document())).await;
    let a = env.get_anonymous("/.well-known/smart-configuration").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["access-control-allow-origin"], "*");
    assert_eq!(a.json(), smart_document());
    assert_eq!(env.upstream.hits(), 0);

    let a = env.get_anonymous("/metadata").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let security = &a.json()["rest"][0]["security"];
    assert_eq!(security["extension"][0]["url"], OAUTH_URIS);
    let uris = &security["extension"][0]["extension"];
    assert_eq!(
        uris[0],
        json!({"url": "authorize", "valueUri": "https://as.example/auth/authorize"})
    );
    assert_eq!(
        uris[1],
        json!({"url": "token", "valueUri": "https://as.example/auth/token"})
    );
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    // Neighbouring deny: anything else still needs a token.
    env.get_anonymous("/Patient/P1").await.expect(401, "login");
}

#[tokio::test]
async fn without_a_document_the_well_known_url_is_404_and_metadata_passes_unchanged() {
    let env = Env::start().await;
    let a = env.get_anonymous("/.well-known/smart-configuration").await;
    a.expect(404, "not-found");
    let a = env.get_anonymous("/metadata").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json()["rest"][0].get("security").is_none());
}

#[test]
fn a_gateway_without_issuers_refuses_to_start_unless_auth_is_disabled() {
    let mut config = gateway::config("http://127.0.0.1:9/fhir").unwrap();
    config.auth = fhirgate_gateway::AuthConfig::default();
    assert!(matches!(
        Gateway::new(config.clone()),
        Err(BuildError::NoIssuers)
    ));
    config.auth = fhirgate_gateway::AuthConfig::disabled();
    assert!(Gateway::new(config).is_ok());
}
