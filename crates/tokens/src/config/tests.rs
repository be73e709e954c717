//! Config parsing and validation tests.
use super::*;

fn yaml(s: &str) -> Result<IssuerConfig, serde_json::Error> {
    serde_json::from_str(s)
}

#[test]
fn documented_yaml_example_parses() {
    let yaml = r"
issuer: https://login.example.org/oauth2/default
audiences: [https://fhir.example.org/fhir]
algorithms: [RS256, ES256]
clock_skew: 60s
max_token_lifetime: 24h
required_typ: at+jwt
claims: { scope: [scp], client_id: [cid] }
introspection:
  endpoint: https://login.example.org/oauth2/default/v1/introspect
  client_id: fhirgate
  client_secret_env: FHIRGATE_INTROSPECTION_SECRET
";
    let c: IssuerConfig = serde_yaml_ng::from_str(yaml).unwrap();
    let s = c
        .validate_with_env("https://gw/fhir", &|_| Some("pw".into()))
        .unwrap();
    assert_eq!(
        s.audiences,
        vec!["https://fhir.example.org/fhir".to_string()]
    );
    assert_eq!(s.claims.scope, vec!["scp".to_string()]);
    assert_eq!(s.claims.patient, "patient");
    assert_eq!(s.max_lifetime, Duration::from_secs(86_400));
    let typo = yaml.replace("clock_skew", "clock_skwe");
    assert!(serde_yaml_ng::from_str::<IssuerConfig>(&typo).is_err());
}

#[test]
fn defaults_and_durations() {
    let c =
        yaml(r#"{"issuer":"https://idp.example","clock_skew":"30s","fetch_max_size":"512KiB"}"#)
            .unwrap();
    let s = c.validate_with_env("https://gw/fhir", &|_| None).unwrap();
    assert_eq!(s.audiences, vec!["https://gw/fhir".to_string()]);
    assert_eq!(s.clock_skew, Duration::from_secs(30));
    assert_eq!(s.fetch_max_bytes, 512 * 1024);
    assert_eq!(s.algorithms, DEFAULT_ALGORITHMS.to_vec());
}

#[test]
fn misspelled_keys_and_bad_values_stop_startup() {
    assert!(yaml(r#"{"issuer":"https://idp","audience":"x"}"#).is_err());
    let bad = [
        r#"{"issuer":"not a url"}"#,
        r#"{"issuer":"http://idp.example.com"}"#,
        r#"{"issuer":"https://idp","clock_skew":"soon"}"#,
        r#"{"issuer":"https://idp","algorithms":["none"]}"#,
        r#"{"issuer":"https://idp","algorithms":["HS256"]}"#,
        r#"{"issuer":"https://idp","hs_secret_env":"S"}"#,
        r#"{"issuer":"https://idp","jwks_refresh_min":"2h"}"#,
        r#"{"issuer":"https://idp","introspection":{"endpoint":"https://idp/i","client_id":"gw"}}"#,
    ];
    for b in bad {
        assert!(
            yaml(b)
                .unwrap()
                .validate_with_env("https://gw/fhir", &|_| None)
                .is_err(),
            "{b}"
        );
    }
}

#[test]
fn hs_secret_from_env_and_loopback_http() {
    let c = yaml(r#"{"issuer":"http://127.0.0.1:9/","algorithms":["HS256"],"hs_secret_env":"S"}"#)
        .unwrap();
    let long = "x".repeat(32);
    let s = c
        .validate_with_env("a", &|k| (k == "S").then(|| long.clone()))
        .unwrap();
    assert_eq!(s.hs_secret.as_ref().map(|x| x.expose().len()), Some(32));
    assert_eq!(format!("{:?}", s.hs_secret), "Some(Secret([redacted]))");
    assert!(c.validate_with_env("a", &|_| Some("short".into())).is_err());
}

#[test]
fn introspection_secret_basic() {
    let c = yaml(r#"{"issuer":"https://idp","introspection":{"endpoint":"https://idp/introspect","client_id":"gw","client_secret_env":"X","cache_ttl":"30s"}}"#).unwrap();
    let s = c.validate_with_env("a", &|_| Some("pw".into())).unwrap();
    let i = s.introspection.unwrap();
    assert_eq!(i.cache_ttl, Duration::from_secs(30));
    assert!(matches!(i.auth, ClientAuth::ClientSecretBasic(_)));
}
