//! The shared backend against a real `redis-server` on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhirgate_ratelimit::{RateLimiter, Verdict};

use crate::support::{RedisServer, config, header, read};

fn shared(server: &RedisServer, rules: &str, extra: &str) -> RateLimiter {
    RateLimiter::new(config(&format!(
        "rules: {rules}\nbackend: {{redis: {{url: '{}', timeout: 200ms, connect_timeout: 500ms, retry_interval: 100ms, key_prefix: 't:'}}}}\n{extra}",
        server.url()
    )))
}

/// Hammer `limiters` from `tasks` tasks each; returns (admitted, answered from fallback).
async fn hammer(
    limiters: &[Arc<RateLimiter>],
    client: &'static str,
    tasks: usize,
    per_task: usize,
) -> (usize, usize) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let limiter = Arc::clone(&limiters[t % limiters.len()]);
        handles.push(tokio::spawn(async move {
            let (mut admitted, mut fallback) = (0, 0);
            for _ in 0..per_task {
                let v = limiter.check(&read(client)).await;
                admitted += usize::from(v.is_allowed());
                fallback += usize::from(v.from_fallback());
            }
            (admitted, fallback)
        }));
    }
    let mut total = (0, 0);
    for h in handles {
        let (a, f) = h.await.unwrap();
        total.0 += a;
        total.1 += f;
    }
    total
}

/// Wait (bounded) until the limiter answers from Redis again.
async fn until_shared(limiter: &RateLimiter, client: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = limiter.check(&read(client)).await;
        if !v.from_fallback() && !matches!(v, Verdict::Unavailable { .. }) {
            return;
        }
        assert!(Instant::now() < deadline, "shared limiting never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_limit() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Per hour so the refill during the test (< 1 unit) does not blur the count.
    let rules = "[{name: c, key: client_id, per_hour: 200}]";
    let limiters = [
        Arc::new(shared(&server, rules, "")),
        Arc::new(shared(&server, rules, "")),
    ];
    let (admitted, fallback) = hammer(&limiters, "app", 8, 100).await;
    assert_eq!(fallback, 0);
    assert!(
        (190..=210).contains(&admitted),
        "{admitted} admitted for a combined limit of 200"
    );
    for limiter in &limiters {
        let stats = limiter.stats().snapshot();
        assert_eq!(stats.redis_errors, 0);
        assert_eq!(stats.allowed + stats.rejected, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_headers_match_the_local_arithmetic() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let limiter = shared(
        &server,
        "[{name: c, key: client_id, per_second: 5, per_minute: 60, weights: {search-type: 3}}]",
        "headers: {x_ratelimit: true}",
    );
    let v = limiter.check(&read("app")).await;
    assert!(matches!(v, Verdict::Allowed(_)), "{v:?}");
    assert!(!v.from_fallback());
    assert_eq!(header(&v, "ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&v, "ratelimit-remaining").as_deref(), Some("4"));
    assert_eq!(header(&v, "ratelimit-reset").as_deref(), Some("1"));
    assert_eq!(
        header(&v, "x-ratelimit-remaining-minute").as_deref(),
        Some("59")
    );
    let search = fhirgate_ratelimit::RequestKeyInput {
        interaction: "search-type",
        ..read("app")
    };
    assert!(limiter.check(&search).await.is_allowed());
    // 4 units spent within moments; a second search (3 more) does not fit in 5.
    let refused = limiter.check(&search).await;
    assert!(matches!(refused, Verdict::Rejected(_)), "{refused:?}");
    let retry = refused.retry_after().unwrap();
    assert!(
        retry > Duration::from_millis(300) && retry <= Duration::from_millis(400),
        "{retry:?}"
    );
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_or_refuses_then_recovers() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let rules = "[{name: c, key: client_id, per_hour: 50}]";
    let tolerant = [
        Arc::new(shared(&server, rules, "")),
        Arc::new(shared(&server, rules, "")),
    ];
    let strict = shared(&server, rules, "fault_tolerant: false");
    assert!(!tolerant[0].check(&read("warmup")).await.from_fallback());
    assert!(matches!(
        strict.check(&read("warmup")).await,
        Verdict::Allowed(_)
    ));

    server.kill();

    // Fault tolerant: every request is still answered, by the local limiter.
    let (admitted, fallback) = hammer(&tolerant[..1], "app", 2, 100).await;
    assert_eq!(fallback, 200, "every answer flagged as fallback");
    assert_eq!(admitted, 50, "the local limiter still enforces the rule");
    let stats = tolerant[0].stats().snapshot();
    assert!(
        stats.redis_errors >= 1 && stats.fallbacks == 200 && stats.redis_down == 1,
        "{stats:?}"
    );
    // The breaker spares most requests the round trip: far fewer errors than requests.
    assert!(stats.redis_errors < 100, "{stats:?}");

    // Not fault tolerant: 503 with Retry-After.
    let v = strict.check(&read("app")).await;
    assert!(matches!(v, Verdict::Unavailable { .. }), "{v:?}");
    assert!(header(&v, "retry-after").is_some());
    assert_eq!(strict.stats().snapshot().unavailable, 1);

    server.restart();

    // No restart of the limiters: they reconnect and share one limit again.
    for limiter in tolerant.iter().chain([&Arc::new(strict)]) {
        until_shared(limiter, "probe").await;
        assert_eq!(limiter.stats().snapshot().redis_down, 0);
    }
    let (admitted, fallback) = hammer(&tolerant, "after", 4, 50).await;
    assert_eq!(fallback, 0);
    assert!(
        (48..=52).contains(&admitted),
        "{admitted} admitted for a combined limit of 50"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_at_start_up_is_not_fatal() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.kill();
    let limiter = shared(&server, "[{name: c, key: client_id, per_second: 2}]", "");
    let v = limiter.check(&read("app")).await;
    assert!(v.is_allowed() && v.from_fallback(), "{v:?}");
    server.restart();
    until_shared(&limiter, "app2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_timeout() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let limiter = shared(&server, "[{name: c, key: client_id, per_second: 1000}]", "");
    assert!(!limiter.check(&read("app")).await.from_fallback());
    server.pause();
    // Without the timeout this would wait until the server is resumed.
    let v = tokio::time::timeout(Duration::from_secs(5), limiter.check(&read("app")))
        .await
        .expect("the check is bounded by the Redis timeout");
    assert!(v.is_allowed() && v.from_fallback(), "{v:?}");
    // While the breaker is open, requests skip Redis instead of each waiting out the timeout.
    for _ in 0..200 {
        assert!(limiter.check(&read("app")).await.from_fallback());
    }
    let stats = limiter.stats().snapshot();
    assert!(stats.redis_errors < 20, "{stats:?}");
    server.resume();
    until_shared(&limiter, "app").await;
}

/// Collects formatted log lines; `set_default` is per thread, so the test runs on a
/// current-thread runtime.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines_with(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

#[tokio::test]
async fn outage_and_recovery_are_logged_once_each() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let limiter = shared(&server, "[{name: c, key: client_id, per_second: 100}]", "");
    assert!(!limiter.check(&read("app")).await.from_fallback());
    server.kill();
    for _ in 0..50 {
        assert!(limiter.check(&read("app")).await.from_fallback());
    }
    server.restart();
    until_shared(&limiter, "app").await;

    assert_eq!(
        logs.lines_with("redis unreachable; rate limiting falls back"),
        1
    );
    assert_eq!(logs.lines_with("redis reachable again"), 1);
    assert_eq!(
        logs.lines_with("WARN"),
        2,
        "no log line per request during the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_script_answers_exactly_like_the_local_limiter() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Emission intervals of whole seconds, so the few milliseconds the Redis clock moves
    // during the test cannot change any rounded figure.
    let rules = "[{name: c, key: client_id, per_minute: 10, per_hour: 30, weights: {search-type: 3}}, \
                 {name: i, key: ip, per_minute: 12}]";
    let headers = "headers: {x_ratelimit: true}";
    let redis = shared(&server, rules, headers);
    let (local, _clock) = crate::support::local_limiter(&format!("rules: {rules}\n{headers}"));
    let search = fhirgate_ratelimit::RequestKeyInput {
        interaction: "search-type",
        ..read("app")
    };
    for step in 0..20 {
        let req = if step % 3 == 1 { search } else { read("app") };
        let (r, l) = (redis.check(&req).await, local.check(&req).await);
        assert!(!r.from_fallback());
        assert_eq!(
            r.is_allowed(),
            l.is_allowed(),
            "step {step}: {r:?} vs {l:?}"
        );
        assert_eq!(r.headers(), l.headers(), "step {step}");
    }
    assert!(
        redis.stats().snapshot().rejected > 0,
        "the sequence reached the limits"
    );
}
