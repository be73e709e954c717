//! `/metrics`: Prometheus text that parses, and counters that move with the requests made.

use std::collections::BTreeMap;

use crate::{Env, rate_limit};

/// One sample: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// Parse the text exposition format strictly: every line is a `# HELP`/`# TYPE` comment or
/// `name{label="value",...} value`.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end;
            loop {
                let Some((i, c)) = chars.next() else {
                    panic!("unterminated labels: {line}")
                };
                if c == '}' {
                    end = i;
                    break;
                }
                if c == ',' {
                    continue;
                }
                // label name
                let start = i;
                let mut eq = None;
                for (j, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(j);
                        break;
                    }
                    assert!(
                        c.is_ascii_alphanumeric() || c == '_',
                        "bad label name in {line}"
                    );
                }
                let eq = eq.unwrap_or_else(|| panic!("label without value: {line}"));
                let key = inner[start..eq].to_owned();
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let (_, escaped) = chars.next().unwrap();
                            value.push(match escaped {
                                'n' => '\n',
                                other => other,
                            });
                        }
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value: {line}"),
                    }
                }
                labels.insert(key, value);
            }
            rest = &inner[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push((name.to_owned(), labels, value));
    }
    out
}

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test]
async fn counters_move_with_requests_and_the_output_parses() {
    let env = Env::start_with(|c| {
        c.rate_limit = Some(rate_limit(serde_json::json!({
            "rules": [{"name": "per-client", "key": "client_id", "per_minute": 1}]
        })));
    })
    .await;
    let before = parse(&env.scrape().await);
    let build = total(&before, "fhirgate_build_info", &[]);
    assert_eq!(build, 1.0);
    assert_eq!(
        total(&before, "fhirgate_http_requests_total", &[]),
        0.0,
        "nothing counted before any FHIR request"
    );

    let t1 = env.t1();
    assert_eq!(env.get("/Patient/P1", &t1).await.status, 200);
    assert_eq!(env.get("/Patient/P2", &t1).await.status, 403);
    assert_eq!(env.get("/Patient/P1", &t1).await.status, 429);
    assert_eq!(env.get_anonymous("/Patient/P1").await.status, 401);

    let after = parse(&env.scrape().await);
    let ok = [
        ("status_class", "2xx"),
        ("interaction", "read"),
        ("resource_type", "Patient"),
        ("client", "app-1"),
    ];
    assert_eq!(total(&after, "fhirgate_http_requests_total", &ok), 1.0);
    assert_eq!(
        total(
            &after,
            "fhirgate_http_requests_total",
            &[("status_class", "4xx")]
        ),
        3.0
    );
    assert_eq!(
        total(
            &after,
            "fhirgate_http_requests_total",
            &[("client", "none")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &after,
            "fhirgate_token_failures_total",
            &[("reason", "missing")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &after,
            "fhirgate_authz_denials_total",
            &[("reason", "other_patient")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &after,
            "fhirgate_ratelimit_rejections_total",
            &[("rule", "per-client")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &after,
            "fhirgate_ratelimit_decisions_total",
            &[("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        total(&after, "fhirgate_request_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(
        total(&after, "fhirgate_upstream_duration_seconds_count", &[]),
        1.0,
        "only the forwarded read reached the upstream"
    );
    assert!(total(&after, "fhirgate_jwks_fetches_total", &[]) >= 1.0);
}

#[tokio::test]
async fn client_labels_are_bounded() {
    let env = Env::start_with(|c| c.metrics.max_client_labels = 2).await;
    for client in ["a", "b", "c", "d"] {
        let a = env.get("/Patient/P1", &env.token_of(client)).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let samples = parse(&env.scrape().await);
    let clients: std::collections::BTreeSet<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "fhirgate_http_requests_total")
        .filter_map(|(_, l, _)| l.get("client").cloned())
        .collect();
    assert_eq!(clients.len(), 3, "{clients:?}");
    assert!(clients.contains("other"));
    assert_eq!(
        total(
            &samples,
            "fhirgate_http_requests_total",
            &[("client", "other")]
        ),
        2.0
    );
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let env = Env::start_with(|c| c.metrics.enabled = false).await;
    let a = env.send(env.http.get(env.gw.root_url("/metrics"))).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn an_admin_listener_takes_the_metrics_off_the_main_one() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = free.local_addr().unwrap();
    drop(free);
    let env = Env::start_with(|c| c.metrics.admin_listen = Some(admin)).await;
    assert_eq!(env.get("/Patient/P1", &env.t1()).await.status, 200);
    let main = env.send(env.http.get(env.gw.root_url("/metrics"))).await;
    assert_eq!(main.status, 404);
    let a = env
        .send(env.http.get(format!("http://{admin}/metrics")))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let samples = parse(&a.text);
    assert_eq!(
        total(
            &samples,
            "fhirgate_http_requests_total",
            &[("status_class", "2xx")]
        ),
        1.0
    );
    let probe = env
        .send(env.http.get(format!("http://{admin}/healthz")))
        .await;
    assert_eq!(probe.status, 200);
    let fhir = env
        .send(env.http.get(format!("http://{admin}/fhir/Patient/P1")))
        .await;
    assert_eq!(fhir.status, 404, "the admin listener serves no FHIR");
}
