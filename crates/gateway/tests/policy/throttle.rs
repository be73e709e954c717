//! Phase 4: the configured limits answer 429 with `Retry-After` and `RateLimit-*`, admitted
//! requests carry the quota headers, and an unreachable shared store without fallback is 503.

use serde_json::json;

use crate::{Env, rate_limit};

#[tokio::test]
async fn requests_over_the_per_client_limit_get_429_with_retry_after() {
    let env = Env::start_with(|c| {
        c.rate_limit = Some(rate_limit(json!({
            "rules": [{"name": "per-client", "key": "client_id", "per_minute": 3}]
        })));
    })
    .await;
    let t1 = env.t1();
    for remaining in ["2", "1", "0"] {
        let a = env.get("/Patient/P1", &t1).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header("ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(a.header("ratelimit-remaining").as_deref(), Some(remaining));
        assert!(a.header("ratelimit-reset").is_some());
        assert!(a.header("retry-after").is_none());
    }
    let hits = env.upstream.hits();
    let refused = env.get("/Patient/P1", &t1).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "throttled");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // One unit comes back every 20 s.
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(refused.header("ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(
        env.upstream.hits(),
        hits,
        "a throttled request never reaches the upstream"
    );

    // Another client has its own quota.
    let other = env.get("/Patient/P1", &env.token_of("app-2")).await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.header("ratelimit-remaining").as_deref(), Some("2"));
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_they_spend_quota() {
    let env = Env::start_with(|c| {
        c.rate_limit = Some(rate_limit(json!({
            "rules": [{"name": "per-ip", "key": "ip", "per_minute": 2}]
        })));
    })
    .await;
    for _ in 0..3 {
        assert_eq!(env.get_anonymous("/Patient/P1").await.status, 401);
    }
    let a = env.get("/Patient/P1", &env.t1()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("ratelimit-remaining").as_deref(), Some("1"));
}

#[tokio::test]
async fn unreachable_redis_without_fallback_is_503_transient() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = Env::start_with(|c| {
        c.rate_limit = Some(rate_limit(json!({
            "rules": [{"name": "per-client", "key": "client_id", "per_second": 10}],
            "backend": {"redis": {"url": format!("redis://127.0.0.1:{port}/0"),
                                   "timeout": "200ms", "connect_timeout": "200ms"}},
            "fault_tolerant": false
        })));
    })
    .await;
    let a = env.get("/Patient/P1", &env.t1()).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.code(), "transient");
    assert!(a.header("retry-after").is_some());
    assert_eq!(env.upstream.hits(), 0);
}
