//! The identity-provider examples (`examples/okta.yaml`, `keycloak.yaml`, `azure-ad.yaml`)
//! stay valid and keep meaning what their comments say: each passes `check-config`, and run
//! against a local issuer standing in for the provider, a token shaped like that provider's
//! (its scope and client-id claims) is accepted while the same scopes under a claim the
//! provider does not use grant nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fhirgate_testkit::issuer::TestIssuer;
use fhirgate_testkit::process::FhirgateProcess;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::{Value, json};

use crate::BIN;

const PUBLIC_BASE: &str = "https://fhir.example.org/fhir";

struct Example {
    file: &'static str,
    /// The issuer URL written in the file, replaced by the local issuer's.
    issuer: &'static str,
    /// Claims a token from this provider carries (besides iss/aud/sub/patient/exp).
    native: fn() -> Vec<(&'static str, Value)>,
    /// The same grant under claims this provider does not use.
    foreign: fn() -> Vec<(&'static str, Value)>,
    client_id: &'static str,
}

const EXAMPLES: [Example; 3] = [
    Example {
        file: "okta.yaml",
        issuer: "https://example.okta.com/oauth2/default",
        native: || {
            vec![
                ("scp", json!(["launch/patient", "patient/*.rs"])),
                ("cid", json!("okta-app")),
            ]
        },
        foreign: || vec![("scope", json!("patient/*.rs")), ("cid", json!("okta-app"))],
        client_id: "okta-app",
    },
    Example {
        file: "keycloak.yaml",
        issuer: "https://keycloak.example.org/realms/fhir",
        native: || {
            vec![
                ("scope", json!("openid launch/patient patient/*.rs")),
                ("azp", json!("keycloak-app")),
            ]
        },
        foreign: || {
            vec![
                ("scp", json!("patient/*.rs")),
                ("azp", json!("keycloak-app")),
            ]
        },
        client_id: "keycloak-app",
    },
    Example {
        file: "azure-ad.yaml",
        issuer: "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
        native: || {
            vec![
                ("scp", json!("launch/patient patient/*.rs")),
                ("azp", json!("azure-app")),
            ]
        },
        foreign: || {
            vec![
                ("scope", json!("patient/*.rs")),
                ("azp", json!("azure-app")),
            ]
        },
        client_id: "azure-app",
    },
];

fn read_example(file: &str) -> String {
    let path = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../examples")
    .join(file);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn each_identity_provider_example_passes_check_config() {
    for example in &EXAMPLES {
        let path = PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .join("../../examples")
        .join(example.file);
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            example.file,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = read_example(example.file);
        assert!(
            text.contains(&format!("- issuer: {}", example.issuer)),
            "{} names its issuer",
            example.file
        );
    }
}

fn token(issuer: &TestIssuer, claims: Vec<(&'static str, Value)>) -> String {
    let mut builder = issuer
        .token()
        .claim("aud", PUBLIC_BASE)
        .without_claim("scope")
        .without_claim("client_id");
    for (name, value) in claims {
        builder = builder.claim(name, value);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn each_identity_provider_example_reads_that_providers_claims() {
    let issuer = TestIssuer::start().await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Patient/P1",
        Canned::resource(&json!({"resourceType": "Patient", "id": "P1"})),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for example in &EXAMPLES {
        let audit = tempfile::tempdir().unwrap();
        let text = read_example(example.file)
            .replace("listen: 0.0.0.0:8080", "listen: 127.0.0.1:0")
            .replace(example.issuer, issuer.issuer())
            .replace("http://hapi.internal:8080/fhir", &upstream.base_url())
            .replace(
                "/var/lib/fhirgate/audit",
                &audit.path().display().to_string(),
            );
        let gateway = FhirgateProcess::serve(BIN, &text).await.unwrap();
        let url = format!("{}/fhir/Patient/P1", gateway.address);

        let allowed = client
            .get(&url)
            .bearer_auth(token(&issuer, (example.native)()))
            .send()
            .await
            .unwrap();
        let status = allowed.status();
        let body = allowed.text().await.unwrap();
        assert_eq!(status, 200, "{}: {body}", example.file);
        assert!(body.contains("\"P1\""), "{}: {body}", example.file);

        let refused = client
            .get(&url)
            .bearer_auth(token(&issuer, (example.foreign)()))
            .send()
            .await
            .unwrap();
        let status = refused.status();
        let body = refused.text().await.unwrap();
        assert_eq!(status, 403, "{}: {body}", example.file);
        assert!(
            body.contains("OperationOutcome"),
            "{}: {body}",
            example.file
        );

        // The provider's client-id claim reached the audit record.
        let mut trail = String::new();
        for entry in std::fs::read_dir(audit.path()).unwrap() {
            trail.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
        }
        assert!(
            trail.contains(example.client_id),
            "{}: client id {} not in the audit trail:\n{trail}",
            example.file,
            example.client_id
        );
    }
}
