use fhirgate_ratelimit::{ConfigError, RawRateLimitConfig};

fn validate(yaml: &str) -> Result<fhirgate_ratelimit::RateLimitConfig, String> {
    let raw: RawRateLimitConfig =
        serde_yaml_ng::from_str(yaml).map_err(|e| format!("yaml: {e}"))?;
    raw.validate().map_err(|e| e.to_string())
}

#[test]
fn full_example_validates() {
    let cfg = validate(
        r#"
rules:
  - name: per-client
    key: client_id
    per_second: 20
    per_minute: 600
    weights: { search-type: 5, $everything: 20, default: 1 }
  - name: per-user-patient
    key: [client_id, sub, patient]
    match: { interactions: [read, search-type], resource_types: [Observation], path_prefix: /Observation }
    per_hour: 10000
    per_day: 100000
  - name: per-api-key
    key: "header:X-Api-Key"
    per_second: 5
backend:
  redis:
    url: redis://:secret@127.0.0.1:6379/0
    timeout: 50ms
    connect_timeout: 200ms
    retry_interval: 1s
    pool_size: 4
    key_prefix: "gw:rl:"
fault_tolerant: false
headers: { hide: false, x_ratelimit: true }
local: { max_keys: 50000 }
"#,
    )
    .unwrap();
    assert!(cfg.is_shared());
    assert_eq!(
        cfg.rule_names().collect::<Vec<_>>(),
        ["per-client", "per-user-patient", "per-api-key"]
    );
    assert!(
        !format!("{cfg:?}").contains("secret"),
        "the Redis password never reaches Debug output"
    );
}

#[test]
fn local_is_the_default_backend() {
    let cfg = validate("rules: [{name: a, key: ip, per_second: 1}]\nbackend: local\n").unwrap();
    assert!(!cfg.is_shared());
    assert!(!validate("{}").unwrap().is_shared());
}

#[test]
fn mistakes_stop_start_up_with_a_precise_message() {
    let cases = [
        (
            "rules: [{name: a, key: ip, per_second: 1, per_mnute: 2}]",
            "per_mnute",
        ),
        ("rules: [{name: a, key: ip}]", "at least one of per_second"),
        (
            "rules: [{name: a, key: cookie, per_second: 1}]",
            "unknown key part 'cookie'",
        ),
        (
            "rules: [{name: a, key: 'header:bad header', per_second: 1}]",
            "not a valid header name",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 0}]",
            "per_second must be between 1",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 10, weights: {search-type: 11}}]",
            "exceeds the smallest limit 10",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 10, weights: {serch: 1}}]",
            "unknown interaction 'serch'",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 1, match: {interactions: [reed]}}]",
            "unknown interaction 'reed'",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 1, match: {path_prefix: Patient}}]",
            "must start with '/'",
        ),
        (
            "rules: [{name: a, key: ip, per_second: 1}, {name: a, key: sub, per_second: 1}]",
            "duplicate rule name",
        ),
        (
            "rules: [{name: 'a b', key: ip, per_second: 1}]",
            "name must be",
        ),
        ("backend: {redis: {url: 'http://x'}}", "not a Redis URL"),
        (
            "backend: {redis: {url: 'redis://h', timeout: soon}}",
            "timeout 'soon'",
        ),
        (
            "backend: {redis: {url: 'redis://h', pool_size: 0}}",
            "pool_size 0",
        ),
        (
            "backend: {redis: {url: 'redis://h', tiemout: 5ms}}",
            "tiemout",
        ),
        ("backend: memcached", "memcached"),
        ("headers: {hidden: true}", "hidden"),
    ];
    for (yaml, expected) in cases {
        let err = validate(yaml).expect_err(yaml);
        assert!(
            err.contains(expected),
            "{yaml}: got '{err}', expected it to mention '{expected}'"
        );
    }
}

#[test]
fn rule_errors_name_the_rule() {
    let raw: RawRateLimitConfig = serde_yaml_ng::from_str(
        "rules: [{name: ok, key: ip, per_second: 1}, {name: broken, key: ip}]",
    )
    .unwrap();
    match raw.validate() {
        Err(ConfigError::Rule { index, name, .. }) => {
            assert_eq!((index, name.as_str()), (1, "broken"))
        }
        other => panic!("unexpected {other:?}"),
    }
}
