//! What removes entries: the memory bound, writes through the gateway, the purge endpoint;
//! and the anonymous partition of `auth.mode: disabled`.

use fhirgate_fhir::ResourceType::{Location, Patient, Practitioner};
use fhirgate_gateway::AuthConfig;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::json;

use crate::{Env, READ_SEARCH, cache, rule};

fn resource(rt: &str, id: &str) -> Canned {
    Canned::resource(&json!({"resourceType": rt, "id": id}))
}

#[tokio::test]
async fn total_size_stays_within_max_memory() {
    let upstream = MockUpstream::start().await.unwrap();
    let filler = "y".repeat(4000);
    for i in 0..60 {
        upstream.respond(
            &format!("/Practitioner/p{i}"),
            Canned::resource(
                &json!({"resourceType": "Practitioner", "id": format!("p{i}"),
                "text": {"div": filler}}),
            ),
        );
    }
    let env = Env::start(&upstream.base_url(), |c| {
        let mut config = cache(vec![rule(&[Practitioner], READ_SEARCH)]);
        config.max_memory = 64 * 1024;
        config.max_entry_size = 8 * 1024;
        c.cache = Some(config);
    })
    .await;
    let t1 = env.user("user/*.rs");
    for i in 0..60 {
        env.get(&format!("/Practitioner/p{i}"), &t1)
            .await
            .expect(200, "Miss");
    }
    let bytes = env.metric("fhirgate_cache_bytes").await;
    let entries = env.metric("fhirgate_cache_entries").await;
    let evicted = env
        .metric("fhirgate_cache_evictions_total{reason=\"size\"}")
        .await;
    assert!(bytes > 0.0 && bytes <= 64.0 * 1024.0, "{bytes}");
    assert!((1.0..60.0).contains(&entries), "{entries}");
    assert!(evicted >= 1.0, "{evicted}");
}

#[tokio::test]
async fn writes_invalidate_their_type_and_batches_everything() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Practitioner/pr1", resource("Practitioner", "pr1"));
    upstream.respond(
        "/Practitioner",
        Canned::resource(&json!({"resourceType": "Bundle", "type": "searchset", "entry": []})),
    );
    upstream.respond("/Location/l1", resource("Location", "l1"));
    upstream.respond(
        "/",
        Canned::resource(&json!({"resourceType": "Bundle", "type": "batch-response", "entry": []})),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner, Location], READ_SEARCH)]));
    })
    .await;
    let admin = env.user("system/*.*");
    let reads = [
        "/Practitioner/pr1",
        "/Practitioner?name=doc",
        "/Location/l1",
    ];
    for path in reads {
        env.get(path, &admin).await.expect(200, "Miss");
        env.get(path, &admin).await.expect(200, "Hit");
    }
    assert_eq!(upstream.hits(), 3);

    let put = env
        .send(
            env.http
                .put(env.gw.url("/Practitioner/pr1"))
                .bearer_auth(&admin)
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType": "Practitioner", "id": "pr1"}).to_string()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(upstream.hits(), 4);
    // The type's read and search are gone; another type's entry stays.
    env.get("/Practitioner/pr1", &admin)
        .await
        .expect(200, "Miss");
    env.get("/Practitioner?name=doc", &admin)
        .await
        .expect(200, "Miss");
    env.get("/Location/l1", &admin).await.expect(200, "Hit");
    assert_eq!(upstream.hits(), 6);

    // A refused write changes nothing upstream and invalidates nothing.
    let refused = env
        .send(
            env.http
                .delete(env.gw.url("/Location/l1"))
                .bearer_auth(env.user("system/*.rs")),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    env.get("/Location/l1", &admin).await.expect(200, "Hit");

    // A batch may touch any type.
    let batch = env
        .send(
            env.http
                .post(env.gw.url("/"))
                .bearer_auth(&admin)
                .header("content-type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Bundle", "type": "batch", "entry": [
                        {"request": {"method": "DELETE", "url": "Location/l1"}}]})
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(batch.status, 200, "{}", batch.text);
    env.get("/Location/l1", &admin).await.expect(200, "Miss");
    assert!(
        env.metric("fhirgate_cache_invalidations_total").await >= 2.0,
        "put and batch"
    );
}

#[tokio::test]
async fn the_admin_listener_purges_one_type_or_everything() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Practitioner/pr1", resource("Practitioner", "pr1"));
    upstream.respond("/Location/l1", resource("Location", "l1"));
    let env = Env::start_admin(&upstream.base_url(), true, |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner, Location], READ_SEARCH)]));
    })
    .await;
    let t1 = env.user("user/*.rs");
    for path in ["/Practitioner/pr1", "/Location/l1"] {
        env.get(path, &t1).await.expect(200, "Miss");
        env.get(path, &t1).await.expect(200, "Hit");
    }
    // Not on the public listener.
    let public = env
        .send(env.http.post(env.gw.root_url("/admin/cache/purge")))
        .await;
    assert_eq!(public.status, 404);
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Hit");

    let a = env.admin_post("/admin/cache/purge?type=Practitioner").await;
    assert_eq!(a.status, 200, "{}", a.text);
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    env.get("/Location/l1", &t1).await.expect(200, "Hit");

    let a = env.admin_post("/admin/cache/purge?type=practitioner").await;
    assert_eq!(a.status, 400, "{}", a.text);
    let admin = env.admin.unwrap();
    let a = env
        .send(env.http.get(format!("http://{admin}/admin/cache/purge")))
        .await;
    assert_eq!(a.status, 405);
    env.get("/Location/l1", &t1).await.expect(200, "Hit");

    let a = env.admin_post("/admin/cache/purge").await;
    assert_eq!(a.status, 200, "{}", a.text);
    env.get("/Location/l1", &t1).await.expect(200, "Miss");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    assert_eq!(upstream.hits(), 5);
}

#[tokio::test]
async fn without_authentication_everyone_shares_one_anonymous_partition() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond("/Patient/1", resource("Patient", "1"));
    upstream.respond("/Patient/2", resource("Patient", "2"));
    let env = Env::start(&upstream.base_url(), |c| {
        c.auth = AuthConfig::disabled();
        c.cache = Some(cache(vec![rule(&[Patient], READ_SEARCH)]));
    })
    .await;
    let get = |path: &'static str| env.send(env.http.get(env.gw.url(path)));
    get("/Patient/1").await.expect(200, "Miss");
    let hit = get("/Patient/1").await;
    hit.expect(200, "Hit");
    assert_eq!(hit.json()["id"], "1");
    get("/Patient/2").await.expect(200, "Miss");
    assert_eq!(upstream.hits(), 2);
}
