//! Identity-provider faults (issue #10 item 3, docs/security.md §2): the JWKS or the
//! introspection endpoint down, slow, oversized or answering garbage. Keys already fetched
//! keep verifying, an unknown `kid` gets 503 `transient` with Retry-After while its refetch
//! fails (401 once a fetched key set lacks it), introspection fails closed, and everything
//! recovers without a restart.

use std::time::Duration;

use fhirgate_testkit::issuer::{INTROSPECTION_CLIENT_SECRET, TestIssuer};
use fhirgate_testkit::mint::{TestKey, now_secs};
use fhirgate_testkit::upstream::MockUpstream;

use crate::{assert_alive, config, eventually, get, start, start_with_env};

/// Keys go stale after 1 s, so every fault below is met by a real refresh attempt rather
/// than by a snapshot that is still fresh; refetches are limited to one a second and give
/// up after 500 ms.
const FAST_REFRESH: &str = "jwks_refresh_min: 1s
jwks_refresh_max: 1s
jwks_refetch_interval: 1s
fetch_timeout: 500ms";

#[derive(Clone, Copy, Debug)]
enum JwksFault {
    Down,
    Slow,
    Oversized,
    Garbage,
    NotAKeySet,
}

fn apply(issuer: &TestIssuer, fault: JwksFault, on: bool) {
    match fault {
        JwksFault::Down => issuer.set_outage(on),
        JwksFault::Slow => issuer.set_delay(if on {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        }),
        JwksFault::Oversized => issuer.set_oversized_jwks(on),
        JwksFault::Garbage => issuer.set_jwks_body(on.then_some("<html>not json")),
        JwksFault::NotAKeySet => issuer.set_jwks_body(on.then_some(r#"{"keys":"none"}"#)),
    }
}

fn ec_token(issuer: &TestIssuer, key: &TestKey) -> String {
    issuer.token_with(key, "ES256", now_secs()).build().unwrap()
}

#[tokio::test]
async fn jwks_faults_keep_cached_keys_serving_and_recover_without_restart() {
    let issuer = TestIssuer::start().await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let gw = start(&config(&upstream.base_url(), &issuer, FAST_REFRESH, "")).await;

    // Keys are loaded by the first token.
    let ok = get(&gw, "/Patient/P1", Some(&issuer.token().build().unwrap())).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    let faults = [
        JwksFault::Down,
        JwksFault::Slow,
        JwksFault::Oversized,
        JwksFault::Garbage,
        JwksFault::NotAKeySet,
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        apply(&issuer, fault, true);
        let fetches = issuer.jwks_fetches() + issuer.discovery_fetches();
        // Each token is new (own jti), so it is verified with the cached key, not looked up
        // in the token cache; after 1 s the snapshot is stale and a refresh is attempted.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..3 {
            let a = get(&gw, "/Patient/P1", Some(&issuer.token().build().unwrap())).await;
            assert_eq!(
                a.status, 200,
                "{fault:?}: a cached key stopped working: {a:?}"
            );
        }
        // The refresh really was tried against the faulty endpoint.
        assert!(
            issuer.jwks_fetches() + issuer.discovery_fetches() > fetches,
            "{fault:?}: no refresh attempted"
        );

        // A kid the gateway has never seen: its refetch fails, so 503 with Retry-After.
        let rotated = TestKey::ec_p256(&format!("rotated-{i}")).unwrap();
        let unknown = ec_token(&issuer, &rotated);
        let a = get(&gw, "/Patient/P1", Some(&unknown)).await;
        a.expect(503, "transient");
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{fault:?}: Retry-After {retry}");
        assert_alive(&gw).await;

        // The issuer recovers with the new key published: it works without a restart.
        issuer.add_key(rotated.clone());
        apply(&issuer, fault, false);
        eventually(Duration::from_secs(15), "the rotated key is fetched", || {
            let token = ec_token(&issuer, &rotated);
            let gw = &gw;
            async move { (get(gw, "/Patient/P1", Some(&token)).await.status == 200).then_some(()) }
        })
        .await;

        // With a key set freshly fetched, a kid it does not hold is simply unknown: 401.
        let stranger = TestKey::ec_p256(&format!("never-published-{i}")).unwrap();
        let a = get(&gw, "/Patient/P1", Some(&ec_token(&issuer, &stranger))).await;
        assert_eq!(a.status, 401, "{fault:?}: {a:?}");
        assert!(
            a.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("invalid_token")),
            "{fault:?}: {a:?}"
        );
    }
    assert_alive(&gw).await;
}

#[tokio::test]
async fn an_issuer_down_at_start_up_answers_503_then_recovers() {
    let issuer = TestIssuer::start().await.unwrap();
    issuer.set_outage(true);
    let upstream = MockUpstream::start().await.unwrap();
    let gw = start(&config(&upstream.base_url(), &issuer, FAST_REFRESH, "")).await;

    // No key was ever fetched: nothing can be verified, and nothing is let through.
    let a = get(&gw, "/Patient/P1", Some(&issuer.token().build().unwrap())).await;
    a.expect(503, "transient");
    assert!(a.headers.contains_key("retry-after"), "{a:?}");
    assert_eq!(upstream.hits(), 0);

    issuer.set_outage(false);
    eventually(
        Duration::from_secs(15),
        "keys load once the issuer is up",
        || {
            let token = issuer.token().build().unwrap();
            let gw = &gw;
            async move { (get(gw, "/Patient/P1", Some(&token)).await.status == 200).then_some(()) }
        },
    )
    .await;
    assert_alive(&gw).await;
}

const SECRET_ENV: &str = "FHIRGATE_FAULTS_INTROSPECTION_SECRET";

#[tokio::test]
async fn introspection_faults_fail_closed_and_recover() {
    let issuer = TestIssuer::start().await.unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let introspection = format!(
        "fetch_timeout: 500ms
introspection:
  endpoint: {}
  client_id: {}
  client_secret_env: {SECRET_ENV}
  cache_ttl: 60s
  negative_cache_ttl: 1s",
        issuer.introspection_endpoint(),
        fhirgate_testkit::issuer::INTROSPECTION_CLIENT_ID,
    );
    let gw = start_with_env(
        &config(&upstream.base_url(), &issuer, &introspection, ""),
        &[(SECRET_ENV, INTROSPECTION_CLIENT_SECRET)],
    )
    .await;
    let activate = |token: &str| {
        issuer.activate_opaque(
            token,
            serde_json::json!({"scope": "patient/*.rs", "patient": "P1", "client_id": "app-1",
                               "aud": fhirgate_testkit::issuer::DEFAULT_AUDIENCE,
                               "exp": now_secs() + 300}),
        );
    };
    activate("opaque-before");
    let a = get(&gw, "/Patient/P1", Some("opaque-before")).await;
    assert_eq!(a.status, 200, "{a:?}");

    let faults: [(&str, &dyn Fn(bool)); 3] = [
        ("down", &|on| issuer.set_outage(on)),
        ("slow", &|on| {
            issuer.set_delay(if on {
                Duration::from_secs(3)
            } else {
                Duration::ZERO
            })
        }),
        ("garbage", &|on| {
            issuer.set_introspection_body(on.then_some("{\"active\": \"perhaps\""))
        }),
    ];
    for (i, (name, set)) in faults.iter().enumerate() {
        set(true);
        // A token the gateway has not seen: it cannot be checked, so it is refused with
        // 503 (fail closed), never let through.
        let token = format!("opaque-during-{i}");
        activate(&token);
        let hits_before = upstream.hits();
        let a = get(&gw, "/Patient/P1", Some(&token)).await;
        a.expect(503, "transient");
        assert!(a.headers.contains_key("retry-after"), "{name}: {a:?}");
        assert_eq!(upstream.hits(), hits_before, "{name}: forwarded unchecked");
        assert_alive(&gw).await;

        set(false);
        // No restart: the same token works once the endpoint answers again.
        eventually(Duration::from_secs(10), "introspection recovers", || {
            let gw = &gw;
            let token = token.clone();
            async move { (get(gw, "/Patient/P1", Some(&token)).await.status == 200).then_some(()) }
        })
        .await;
    }
    // Revocation still takes effect: an inactive answer is 401, not cached as active.
    let a = get(&gw, "/Patient/P1", Some("opaque-never-issued")).await;
    assert_eq!(a.status, 401, "{a:?}");
    assert_alive(&gw).await;
}
