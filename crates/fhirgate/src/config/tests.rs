use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/fhirgate.yaml");

#[test]
fn the_example_config_is_valid_and_matches_the_defaults() {
    let config = parse(EXAMPLE).unwrap().gateway;
    let defaults = GatewayConfig::new(config.public_base_url.clone(), config.upstream.url.clone());
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config.public_base_url.as_str(),
        "https://fhir.example.org/fhir"
    );
    assert_eq!(
        config.upstream.connect_timeout,
        defaults.upstream.connect_timeout
    );
    assert_eq!(
        config.upstream.response_timeout,
        defaults.upstream.response_timeout
    );
    assert_eq!(
        config.upstream.pool_max_idle_per_host,
        defaults.upstream.pool_max_idle_per_host
    );
    assert_eq!(config.limits.max_body_size, defaults.limits.max_body_size);
    assert_eq!(
        config.limits.max_header_size,
        defaults.limits.max_header_size
    );
    assert_eq!(config.limits.max_uri_length, defaults.limits.max_uri_length);
    assert_eq!(
        config.limits.bundle_rewrite_max,
        defaults.limits.bundle_rewrite_max
    );
    assert_eq!(
        config.limits.max_concurrent_requests,
        defaults.limits.max_concurrent_requests
    );
    assert_eq!(config.shutdown.drain_time, Duration::from_secs(30));
}

#[test]
fn minimal_config_takes_defaults() {
    let config = parse("public_base_url: http://gw/fhir\nupstream:\n  url: http://up/fhir\nauth:\n  mode: disabled\n")
        .unwrap()
        .gateway;
    assert_eq!(config.upstream.response_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.max_body_size, 16 * 1024 * 1024);
}

#[test]
fn unknown_key_is_reported_with_its_position() {
    let errors = parse(
        "public_base_url: http://gw/fhir\nupstream:\n  url: http://up/fhir\n  conect_timeout: 5s\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(4));
    assert!(errors[0].message.contains("conect_timeout"), "{errors:?}");
}

#[test]
fn every_validation_error_is_reported_at_its_key() {
    let source = "listen: localhost\npublic_base_url: ftp://gw/fhir\nupstream:\n  url: http://up/fhir\n  connect_timeout: 5 parsecs\nlimits:\n  max_body_size: lots\nshutdown:\n  drain_time: 30\nauth:\n  mode: disabled\n";
    let errors = parse(source).unwrap_err();
    let found: Vec<(&str, Option<usize>, Option<usize>)> = errors
        .iter()
        .map(|e| (e.key.as_str(), e.line, e.column))
        .collect();
    assert_eq!(
        found,
        vec![
            ("public_base_url", Some(2), Some(18)),
            ("listen", Some(1), Some(9)),
            ("upstream.connect_timeout", Some(5), Some(20)),
            ("limits.max_body_size", Some(7), Some(18)),
            ("shutdown.drain_time", Some(9), Some(15)),
        ]
    );
    assert!(
        errors[2].message.contains("duration"),
        "{}",
        errors[2].message
    );
}

#[test]
fn missing_required_keys_are_named() {
    let errors = parse("").unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["public_base_url", "upstream", "auth"]);
}

#[test]
fn errors_display_as_file_line_column() {
    let errors = ConfigErrors {
        file: "conf.yaml".into(),
        errors: parse("public_base_url: nope\nupstream:\n  url: http://up\n").unwrap_err(),
    };
    let text = errors.to_string();
    assert!(
        text.starts_with("conf.yaml:1:18: public_base_url: expected"),
        "{text}"
    );
}

const BASE: &str = "public_base_url: https://gw.example/fhir/\nupstream:\n  url: http://up/fhir\n";

#[test]
fn security_sections_are_read_with_the_audience_defaulting_to_the_public_base() {
    let source = format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\nauthorization:\n  hide_existence: true\n  context_headers: true\n  verify_buffer_max: 1MiB\nsmart:\n  configuration:\n    token_endpoint: https://idp.example/token\n"
    );
    let config = parse(&source).unwrap().gateway;
    assert_eq!(config.auth.issuers.len(), 1);
    assert_eq!(
        config.auth.issuers[0].audiences,
        vec!["https://gw.example/fhir"]
    );
    assert!(config.authorization.hide_existence);
    assert!(config.authorization.context_headers);
    assert!(config.authorization.forward_token);
    assert!(config.authorization.inject_patient);
    assert_eq!(config.authorization.verify_buffer_max, 1024 * 1024);
    assert_eq!(
        config.smart_configuration.unwrap()["token_endpoint"],
        "https://idp.example/token"
    );
}

#[test]
fn no_issuers_refuses_to_start_unless_auth_is_disabled_explicitly() {
    let errors = parse(BASE).unwrap_err();
    assert_eq!(errors[0].key, "auth");
    let disabled = parse(&format!("{BASE}auth:\n  mode: disabled\n"))
        .unwrap()
        .gateway;
    assert_eq!(disabled.auth.mode, fhirgate_gateway::AuthMode::Disabled);
    let typo = parse(&format!("{BASE}auth:\n  mode: off\n")).unwrap_err();
    assert_eq!(typo[0].key, "auth.mode");
}

#[test]
fn misspelled_security_keys_and_bad_values_stop_start_up() {
    let misspelled = parse(&format!(
        "{BASE}auth:\n  mode: disabled\nauthorization:\n  hide_existance: true\n"
    ))
    .unwrap_err();
    assert!(
        misspelled[0].message.contains("hide_existance"),
        "{misspelled:?}"
    );
    let issuer_typo = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\n      audience: x\n"
    ))
    .unwrap_err();
    assert!(
        issuer_typo[0].message.contains("audience"),
        "{issuer_typo:?}"
    );
    let bad = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: not a url\nauthorization:\n  forward_token: yes please\n"
    ))
    .unwrap_err();
    let keys: Vec<&str> = bad.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["auth.issuers", "authorization.forward_token"]);
}

#[test]
fn revocation_notices_are_read_with_defaults_and_bad_values_named() {
    let on = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\n  revocation:\n    redis_url: redis://127.0.0.1:6379/0\n    max_entries: 10\n"
    ))
    .unwrap()
    .gateway;
    let r = on.auth.revocation.unwrap();
    assert_eq!(r.channel, "fhirgate:revocations");
    assert_eq!(r.max_entries, 10);
    assert_eq!(r.timeout, Duration::from_secs(2));
    let off = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\n"
    ))
    .unwrap()
    .gateway;
    assert!(off.auth.revocation.is_none());
    let bad = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\n  revocation:\n    redis_url: http://nope\n"
    ))
    .unwrap_err();
    assert_eq!(bad[0].key, "auth.revocation.redis_url");
    let typo = parse(&format!(
        "{BASE}auth:\n  issuers:\n    - issuer: https://idp.example\n  revocation:\n    redis_url: redis://r\n    chanel: x\n"
    ))
    .unwrap_err();
    assert!(typo[0].message.contains("chanel"), "{typo:?}");
}

#[test]
fn a_syntax_error_at_the_end_of_the_text_points_inside_it() {
    // Found by the `config` fuzz target: the parser put this error on line 2 of a
    // one-line text.
    let errors = parse("{public_base_url: #http://gw/fh").unwrap_err();
    assert_eq!(errors[0].line, Some(1), "{errors:?}");
    assert_eq!(errors[0].column, Some(32), "{errors:?}");
    let errors = parse("listen: 127.0.0.1:8080\r\nupstream: [").unwrap_err();
    assert_eq!(errors[0].line, Some(2), "{errors:?}");
}
