//! The in-process limiter, driven by a manual clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fhirgate_ratelimit::{RequestKeyInput, Verdict, Window};
use http::HeaderMap;

use crate::support::{header, local_limiter, read};

const MS: Duration = Duration::from_millis(1);

#[tokio::test]
async fn admits_exactly_the_limit_then_refuses_with_retry_after() {
    let (limiter, clock) = local_limiter("rules: [{name: c, key: client_id, per_second: 10}]");
    for i in 0..10 {
        let v = limiter.check(&read("app")).await;
        assert!(v.is_allowed(), "request {i} should pass");
        assert_eq!(v.quota().unwrap().remaining, 9 - i);
    }
    let refused = limiter.check(&read("app")).await;
    assert!(matches!(refused, Verdict::Rejected(_)));
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );

    // One unit comes back every 100 ms, not earlier.
    clock.advance(99 * MS);
    assert!(!limiter.check(&read("app")).await.is_allowed());
    clock.advance(MS);
    assert!(limiter.check(&read("app")).await.is_allowed());
    assert!(!limiter.check(&read("app")).await.is_allowed());

    // Another client has its own quota.
    assert!(limiter.check(&read("other")).await.is_allowed());
}

#[tokio::test]
async fn full_quota_returns_after_the_window() {
    let (limiter, clock) = local_limiter("rules: [{name: c, key: client_id, per_minute: 30}]");
    let admitted = burst(&limiter, "app", 100).await;
    assert_eq!(admitted, 30);
    clock.advance(Duration::from_secs(60));
    assert_eq!(burst(&limiter, "app", 100).await, 30);
}

#[tokio::test]
async fn burst_at_a_window_boundary_never_exceeds_the_limit() {
    // A fixed-window counter would admit 2N here: N just before the boundary, N just after.
    for limit in [1_u64, 5, 60, 1000] {
        let (limiter, clock) = local_limiter(&format!(
            "rules: [{{name: c, key: client_id, per_second: {limit}}}]"
        ));
        clock.advance(999 * MS);
        let before = burst(&limiter, "app", 2 * limit).await;
        clock.advance(2 * MS);
        let after = burst(&limiter, "app", 2 * limit).await;
        // 2 ms give back at most 2 ms worth of quota (2·N/1000 units).
        let refill = 2 * limit / 1000;
        assert_eq!(before, limit);
        assert!(
            before + after <= limit + refill,
            "limit {limit}: {before} + {after} admitted across the boundary"
        );
    }
}

#[tokio::test]
async fn no_interval_ever_admits_more_than_the_gcra_bound() {
    // Irregular traffic for 20 s against 20/s: in every interval of length L the admitted
    // count stays within N + L·N/W, so no burst exceeds N beyond what time has refilled.
    let (limiter, clock) = local_limiter("rules: [{name: c, key: client_id, per_second: 20}]");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut admitted_at = Vec::new();
    let mut now_us: u64 = 0;
    while now_us < 20_000_000 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let step = if seed >> 60 == 0 {
            400_000
        } else {
            (seed >> 33) % 30_000
        };
        clock.advance(Duration::from_micros(step));
        now_us += step;
        let n = 1 + (seed >> 20) % 8;
        for _ in 0..n {
            if limiter.check(&read("app")).await.is_allowed() {
                admitted_at.push(now_us);
            }
        }
    }
    assert!(
        admitted_at.len() > 300,
        "traffic was heavy enough to hit the limit"
    );
    let interval_us = 50_000;
    for (i, &start) in admitted_at.iter().enumerate() {
        for len in [0_u64, 10_000, 100_000, 500_000, 999_999] {
            let count = admitted_at[i..]
                .iter()
                .take_while(|&&t| t <= start + len)
                .count() as u64;
            assert!(
                count <= 20 + len / interval_us,
                "{count} admitted in {len} µs from {start}"
            );
        }
    }
}

#[tokio::test]
async fn weights_make_searches_and_everything_cost_more() {
    let (limiter, clock) = local_limiter(
        "rules: [{name: c, key: client_id, per_minute: 20, weights: {search-type: 5, $everything: 20, default: 1}}]",
    );
    let search = RequestKeyInput {
        interaction: "search-type",
        path: "/Observation",
        ..read("app")
    };
    let everything = RequestKeyInput {
        interaction: "operation",
        operation: Some("$everything"),
        path: "/Patient/1/$everything",
        ..read("app")
    };
    let v = limiter.check(&search).await;
    assert_eq!(v.quota().unwrap().remaining, 15);
    for _ in 0..15 {
        assert!(limiter.check(&read("app")).await.is_allowed());
    }
    assert!(!limiter.check(&read("app")).await.is_allowed());

    clock.advance(Duration::from_secs(60));
    assert!(limiter.check(&everything).await.is_allowed());
    let refused = limiter.check(&search).await;
    assert!(!refused.is_allowed());
    // Five units take 5 × 3 s to come back.
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(15)));
}

#[tokio::test]
async fn every_window_is_enforced_and_the_tightest_is_reported() {
    let (limiter, clock) = local_limiter(
        "rules: [{name: c, key: client_id, per_second: 5, per_minute: 8}]\nheaders: {x_ratelimit: true}",
    );
    assert_eq!(burst(&limiter, "app", 10).await, 5);
    clock.advance(Duration::from_secs(1));
    let v = limiter.check(&read("app")).await;
    assert!(v.is_allowed());
    // The minute window has 2 left (8 - 6 plus 1 s of refill at 7.5 s per unit = 0).
    assert_eq!(header(&v, "ratelimit-limit").as_deref(), Some("8"));
    assert_eq!(header(&v, "ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(header(&v, "x-ratelimit-limit-second").as_deref(), Some("5"));
    assert_eq!(
        header(&v, "x-ratelimit-remaining-second").as_deref(),
        Some("4")
    );
    assert_eq!(header(&v, "x-ratelimit-limit-minute").as_deref(), Some("8"));
    assert_eq!(
        header(&v, "x-ratelimit-remaining-minute").as_deref(),
        Some("2")
    );
    assert_eq!(burst(&limiter, "app", 10).await, 2);
    let refused = limiter.check(&read("app")).await;
    let quota = refused.quota().unwrap();
    assert_eq!(quota.window, Window::Minute);
    // Eight units were spent 1 s ago at 7.5 s each: the ninth fits 60 - 1 + 7.5 - 60 = 6.5 s on.
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(6_500)));
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("7"));
    assert_eq!(header(&refused, "ratelimit-reset").as_deref(), Some("59"));
}

#[tokio::test]
async fn a_request_refused_by_one_rule_spends_nothing_from_another() {
    let (limiter, _clock) = local_limiter(
        "rules: [{name: per-client, key: client_id, per_hour: 100}, {name: per-ip, key: ip, per_minute: 3}]\n\
         headers: {x_ratelimit: true}",
    );
    assert_eq!(burst(&limiter, "app", 10).await, 3);
    // The ip rule refused 7 requests; the client rule was charged only for the 3 admitted.
    let other_ip = RequestKeyInput {
        ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        ..read("app")
    };
    let v = limiter.check(&other_ip).await;
    let quota = v.quota().unwrap();
    assert_eq!(&*quota.rule, "per-ip");
    assert_eq!(quota.remaining, 2);
    assert_eq!(
        header(&v, "x-ratelimit-remaining-hour").as_deref(),
        Some("96")
    );
    assert_eq!(limiter.stats().snapshot().rejected, 7);
}

#[tokio::test]
async fn rules_apply_only_to_matching_requests_with_every_key_part() {
    let (limiter, _clock) = local_limiter(
        r#"
rules:
  - name: obs-reads
    key: [client_id, patient]
    match: { interactions: [read], resource_types: [Observation], path_prefix: /Observation }
    per_second: 1
  - name: api-key
    key: "header:x-api-key"
    match: { interactions: [$export] }
    per_second: 1
"#,
    );
    let with_patient = RequestKeyInput {
        patient: Some("p1"),
        ..read("app")
    };
    assert!(matches!(
        limiter.check(&with_patient).await,
        Verdict::Allowed(_)
    ));
    assert!(matches!(
        limiter.check(&with_patient).await,
        Verdict::Rejected(_)
    ));
    // Another patient of the same client is a different key.
    let other = RequestKeyInput {
        patient: Some("p2"),
        ..read("app")
    };
    assert!(limiter.check(&other).await.is_allowed());
    // No patient in the token: the rule has no key, so it does not apply.
    assert_eq!(limiter.check(&read("app")).await, Verdict::Unlimited);
    // Other interaction, type or path: not matched.
    let search = RequestKeyInput {
        interaction: "search-type",
        ..with_patient
    };
    assert_eq!(limiter.check(&search).await, Verdict::Unlimited);
    let condition = RequestKeyInput {
        resource_type: Some("Condition"),
        path: "/Condition/1",
        ..with_patient
    };
    assert_eq!(limiter.check(&condition).await, Verdict::Unlimited);

    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", "k1".parse().unwrap());
    let export = RequestKeyInput {
        interaction: "operation",
        operation: Some("$export"),
        headers: Some(&headers),
        path: "/$export",
        ..read("app")
    };
    assert!(limiter.check(&export).await.is_allowed());
    assert!(!limiter.check(&export).await.is_allowed());
    let mut other_key = HeaderMap::new();
    other_key.insert("x-api-key", "k2".parse().unwrap());
    let export = RequestKeyInput {
        headers: Some(&other_key),
        ..export
    };
    assert!(limiter.check(&export).await.is_allowed());
}

#[tokio::test]
async fn headers_follow_the_switches() {
    let (limiter, _clock) =
        local_limiter("rules: [{name: c, key: client_id, per_minute: 2}]\nheaders: {hide: true}");
    let v = limiter.check(&read("app")).await;
    assert!(v.headers().is_empty(), "hidden headers: {:?}", v.headers());
    limiter.check(&read("app")).await;
    let refused = limiter.check(&read("app")).await;
    let names: Vec<_> = refused
        .headers()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["retry-after"], "a 429 always says when to retry");

    let (limiter, _clock) = local_limiter("rules: [{name: c, key: client_id, per_minute: 2}]");
    let v = limiter.check(&read("app")).await;
    let names: Vec<_> = v
        .headers()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(
        names,
        ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
    );
    assert_eq!(header(&v, "ratelimit-reset").as_deref(), Some("30"));
    assert!(!v.from_fallback());
}

#[tokio::test]
async fn key_memory_stays_bounded_under_a_flood_of_distinct_keys() {
    let (limiter, _clock) =
        local_limiter("rules: [{name: ip, key: ip, per_second: 1}]\nlocal: {max_keys: 5000}");
    for i in 0..100_000_u32 {
        let req = RequestKeyInput {
            ip: Some(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))),
            ..read("app")
        };
        assert!(limiter.check(&req).await.is_allowed());
    }
    let keys = limiter.local_key_count();
    assert!(keys <= 5000, "{keys} keys remembered");
    // Still limiting after the flood.
    let req = RequestKeyInput {
        ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        ..read("app")
    };
    assert!(limiter.check(&req).await.is_allowed());
    assert!(!limiter.check(&req).await.is_allowed());
}

async fn burst(limiter: &fhirgate_ratelimit::RateLimiter, client: &str, n: u64) -> u64 {
    let mut admitted = 0;
    for _ in 0..n {
        if limiter.check(&read(client)).await.is_allowed() {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_admit_exactly_the_limit() {
    let (limiter, _clock) = local_limiter("rules: [{name: c, key: client_id, per_hour: 300}]");
    let limiter = std::sync::Arc::new(limiter);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let limiter = std::sync::Arc::clone(&limiter);
        tasks.push(tokio::spawn(
            async move { burst(&limiter, "app", 100).await },
        ));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert_eq!(admitted, 300);
}

#[test]
fn the_documented_example_config_is_valid() {
    let cfg = crate::support::config(include_str!("../../rate-limit.example.yaml"));
    assert!(cfg.is_shared());
    assert_eq!(cfg.rule_names().count(), 3);
}
