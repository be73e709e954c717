//! HTTP caching semantics against the canned upstream: hit, miss and bypass, TTLs and
//! `max-age`, `no-store`, `private`, `Vary`, `ETag`/`If-None-Match`, HEAD, `/metadata`.

use std::time::Duration;

use fhirgate_fhir::ResourceType::{Location, Observation, Practitioner};
use fhirgate_gateway::{CacheInteraction, CacheRule};
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::json;

use crate::{Env, READ_SEARCH, cache, eventually, rule};

fn practitioner(id: &str) -> Canned {
    Canned::resource(
        &json!({"resourceType": "Practitioner", "id": id, "name": [{"family": "Doc"}]}),
    )
}

fn observation_of(patient: &str) -> Canned {
    Canned::resource(
        &json!({"resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}}),
    )
}

async fn practitioner_env(upstream: &MockUpstream) -> Env {
    Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner, Location], READ_SEARCH)]));
    })
    .await
}

#[tokio::test]
async fn hits_misses_and_bypasses_are_marked_counted_and_spare_the_upstream() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Practitioner/pr1", practitioner("pr1"));
    upstream.respond("/Observation/o1", observation_of("P1"));
    let env = practitioner_env(&upstream).await;
    // A user-level grant: Practitioner answers need no check and land in the shared partition.
    let t1 = env.user("user/*.rs");

    let first = env.get("/Practitioner/pr1", &t1).await;
    first.expect(200, "Miss");
    assert_eq!(upstream.hits(), 1);
    let second = env.get("/Practitioner/pr1", &t1).await;
    second.expect(200, "Hit");
    assert_eq!(upstream.hits(), 1, "served without the upstream");
    assert_eq!(second.text, first.text);
    assert_eq!(second.header("age").as_deref(), Some("0"));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert!(first.header("age").is_none());
    // Each answer carries its own request id, not the stored one.
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));

    // No rule for Observation: forwarded every time.
    env.get("/Observation/o1", &t1).await.expect(200, "Bypass");
    env.get("/Observation/o1", &t1).await.expect(200, "Bypass");
    assert_eq!(upstream.hits(), 3);

    // A client asking for a fresh copy gets one, and refreshes the entry.
    let fresh = env
        .send(
            env.http
                .get(env.gw.url("/Practitioner/pr1"))
                .bearer_auth(&t1)
                .header("cache-control", "no-cache"),
        )
        .await;
    fresh.expect(200, "Miss");
    assert_eq!(upstream.hits(), 4);
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Hit");
    assert_eq!(upstream.hits(), 4);

    let hit = env
        .metric("fhirgate_cache_requests_total{result=\"hit\"}")
        .await;
    let miss = env
        .metric("fhirgate_cache_requests_total{result=\"miss\"}")
        .await;
    let bypass = env
        .metric("fhirgate_cache_requests_total{result=\"bypass\"}")
        .await;
    assert_eq!((hit, miss, bypass), (2.0, 2.0, 2.0));
    assert_eq!(env.metric("fhirgate_cache_entries").await, 1.0);
    assert!(env.metric("fhirgate_cache_bytes").await > 0.0);
}

#[tokio::test]
async fn entries_expire_after_their_ttl_and_upstream_max_age() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Practitioner/pr1", practitioner("pr1"));
    upstream.respond(
        "/Location/l1",
        Canned::resource(&json!({"resourceType": "Location", "id": "l1"}))
            .with_header("cache-control", "public, max-age=1"),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        let mut config = cache(vec![
            CacheRule::new(
                vec![Practitioner],
                vec![CacheInteraction::Read],
                Some(Duration::from_millis(300)),
            ),
            CacheRule::new(
                vec![Location],
                vec![CacheInteraction::Read],
                Some(Duration::from_secs(3600)),
            ),
        ]);
        config.default_ttl = Duration::from_secs(3600);
        c.cache = Some(config);
    })
    .await;
    // A user-level grant: Practitioner answers need no check and land in the shared partition.
    let t1 = env.user("user/*.rs");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    env.get("/Location/l1", &t1).await.expect(200, "Miss");
    eventually(Duration::from_secs(10), || async {
        env.get("/Practitioner/pr1", &t1).await.cache() == "Miss"
    })
    .await;
    // `max-age=1` caps the rule's hour.
    eventually(Duration::from_secs(10), || async {
        env.get("/Location/l1", &t1).await.cache() == "Miss"
    })
    .await;
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn no_store_private_and_foreign_vary_keep_answers_out() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Practitioner/nostore",
        practitioner("nostore").with_header("cache-control", "no-store"),
    );
    upstream.respond(
        "/Practitioner/private",
        practitioner("private").with_header("cache-control", "private, max-age=60"),
    );
    upstream.respond(
        "/Practitioner/vary-auth",
        practitioner("vary-auth").with_header("vary", "Authorization"),
    );
    upstream.respond(
        "/Practitioner/vary-accept",
        practitioner("vary-accept").with_header("vary", "Accept"),
    );
    upstream.respond(
        "/Observation/o1",
        observation_of("P1").with_header("cache-control", "private"),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner, Observation], READ_SEARCH)]));
    })
    .await;
    // A user-level grant: Practitioner answers need no check and land in the shared partition.
    let t1 = env.user("user/*.rs");
    for path in [
        "/Practitioner/nostore",
        "/Practitioner/private",
        "/Practitioner/vary-auth",
    ] {
        env.get(path, &t1).await.expect(200, "Miss");
        env.get(path, &t1).await.expect(200, "Miss");
    }
    assert_eq!(upstream.hits(), 6, "each one went upstream twice");
    // `private` is kept in a per-patient partition (Observation is compartment data).
    let p1 = env.t1();
    env.get("/Observation/o1", &p1).await.expect(200, "Miss");
    env.get("/Observation/o1", &p1).await.expect(200, "Hit");
    // `Vary: Accept` is in the key: cached, and another Accept is another entry.
    env.get("/Practitioner/vary-accept", &t1)
        .await
        .expect(200, "Miss");
    env.get("/Practitioner/vary-accept", &t1)
        .await
        .expect(200, "Hit");
    let other_accept = env
        .send(
            env.http
                .get(env.gw.url("/Practitioner/vary-accept"))
                .bearer_auth(&t1)
                .header("accept", "application/json"),
        )
        .await;
    other_accept.expect(200, "Miss");
    assert_eq!(upstream.hits(), 9);
}

#[tokio::test]
async fn if_none_match_is_answered_304_from_the_cache() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Practitioner/pr1",
        practitioner("pr1").with_header("etag", "W/\"2\""),
    );
    let env = practitioner_env(&upstream).await;
    // A user-level grant: Practitioner answers need no check and land in the shared partition.
    let t1 = env.user("user/*.rs");
    let conditional = |tag: &'static str| {
        env.http
            .get(env.gw.url("/Practitioner/pr1"))
            .bearer_auth(&t1)
            .header("if-none-match", tag)
    };
    // A miss with a matching tag: the upstream is asked for the whole answer (to store it),
    // the client still gets its 304.
    let a = env.send(conditional("W/\"2\"")).await;
    a.expect(304, "Miss");
    assert!(a.text.is_empty());
    let asked = upstream.last_request().unwrap();
    assert!(asked.headers.get("if-none-match").is_none(), "{asked:?}");
    // Hits: 304 for the stored version, the whole answer for another.
    let a = env.send(conditional("W/\"2\"")).await;
    a.expect(304, "Hit");
    assert!(a.text.is_empty());
    assert_eq!(a.header("etag").as_deref(), Some("W/\"2\""));
    let a = env.send(conditional("W/\"1\"")).await;
    a.expect(200, "Hit");
    assert_eq!(a.json()["id"], "pr1");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn head_metadata_and_oversized_answers() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Practitioner/pr1", practitioner("pr1"));
    let big = "x".repeat(64 * 1024);
    upstream.respond(
        "/Practitioner/big",
        Canned::resource(
            &json!({"resourceType": "Practitioner", "id": "big", "text": {"div": big}}),
        ),
    );
    upstream.respond(
        "/metadata",
        Canned::resource(&json!({"resourceType": "CapabilityStatement", "status": "active",
            "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server"}]})),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        let mut config = cache(vec![
            rule(&[Practitioner], READ_SEARCH),
            rule(&[], &[CacheInteraction::Capabilities]),
        ]);
        config.max_entry_size = 16 * 1024;
        c.cache = Some(config);
    })
    .await;
    // A user-level grant: Practitioner answers need no check and land in the shared partition.
    let t1 = env.user("user/*.rs");
    // HEAD shares GET's entry and never stores one of its own.
    let head = env
        .send(
            env.http
                .head(env.gw.url("/Practitioner/pr1"))
                .bearer_auth(&t1),
        )
        .await;
    head.expect(200, "Miss");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    let head = env
        .send(
            env.http
                .head(env.gw.url("/Practitioner/pr1"))
                .bearer_auth(&t1),
        )
        .await;
    head.expect(200, "Hit");
    assert!(head.text.is_empty());
    assert_eq!(upstream.hits(), 2);

    // `/metadata` needs no token and is cached like the rest.
    let anonymous = env.send(env.http.get(env.gw.url("/metadata"))).await;
    anonymous.expect(200, "Miss");
    let again = env.send(env.http.get(env.gw.url("/metadata"))).await;
    again.expect(200, "Hit");
    assert_eq!(again.text, anonymous.text);
    assert_eq!(again.json()["resourceType"], "CapabilityStatement");
    assert_eq!(upstream.hits(), 3);

    // Over `max_entry_size`: passed on whole, never stored.
    let a = env.get("/Practitioner/big", &t1).await;
    a.expect(200, "Miss");
    assert_eq!(a.json()["text"]["div"].as_str().unwrap().len(), 64 * 1024);
    env.get("/Practitioner/big", &t1).await.expect(200, "Miss");
    assert_eq!(upstream.hits(), 5);
}
