//! THE security property: an entry is only ever served to a request with the same
//! authorization partition. A cached compartment resource or searchset of patient P1 never
//! reaches a token for P2, a token lacking the scope, or a granular-scope token that would
//! have filtered it differently; shared types are shared; hits keep their audit records.
//! The upstream is the two-patient server of the authorization tests.

use std::path::Path;

use fhirgate_audit::{AuditConfig, AuditEvent};
use fhirgate_fhir::ResourceType::{Observation, Patient, Practitioner};

use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::json;

use crate::upstream::{FhirUpstream, P2_MARKERS};
use crate::{Answer, Env, READ_SEARCH, cache, rule};

async fn env_with(upstream: &FhirUpstream, audit: Option<&Path>) -> Env {
    Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(
            &[Observation, Patient, Practitioner],
            READ_SEARCH,
        )]));
        c.audit = audit.map(|dir| AuditConfig::file(dir.to_owned()));
    })
    .await
}

fn ids(a: &Answer) -> Vec<String> {
    a.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.pointer("/resource/id")?.as_str().map(str::to_owned))
        .collect()
}

fn assert_no_p1(a: &Answer) {
    for marker in ["Oneperson", "p1 lab", "p1 vitals"] {
        assert!(!a.text.contains(marker), "P1 data leaked: {}", a.text);
    }
}

fn assert_no_p2(a: &Answer) {
    for marker in P2_MARKERS {
        assert!(!a.text.contains(marker), "P2 data leaked: {}", a.text);
    }
}

#[tokio::test]
async fn a_cached_resource_of_p1_is_never_served_to_a_token_for_p2() {
    let upstream = FhirUpstream::start().await.unwrap();
    let env = env_with(&upstream, None).await;
    let t1 = env.t1();
    let t2 = env.token("P2", "launch/patient patient/*.rs");

    env.get("/Observation/o1", &t1).await.expect(200, "Miss");
    let hit = env.get("/Observation/o1", &t1).await;
    hit.expect(200, "Hit");
    assert!(hit.text.contains("p1 lab"));
    assert_eq!(upstream.hits(), 1);

    // P2 asks for the same URL: its own partition, so the upstream is asked and the
    // response check refuses P1's record.
    let a = env.get("/Observation/o1", &t2).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.code(), "forbidden");
    assert_no_p1(&a);
    assert_eq!(upstream.hits(), 2, "not answered from P1's entry");
    // And again: a refusal is never stored either.
    let a = env.get("/Observation/o1", &t2).await;
    assert_eq!(a.status, 403);
    assert_eq!(upstream.hits(), 3);

    // The same for a searchset: each patient gets their own, from their own entry.
    let p1 = env.get("/Observation", &t1).await;
    p1.expect(200, "Miss");
    let mut p1_ids = ids(&p1);
    p1_ids.sort();
    assert_eq!(p1_ids, ["o1", "o1v"]);
    env.get("/Observation", &t1).await.expect(200, "Hit");
    let p2 = env.get("/Observation", &t2).await;
    p2.expect(200, "Miss");
    assert_eq!(ids(&p2), ["o2"]);
    assert_no_p1(&p2);
    let p2 = env.get("/Observation", &t2).await;
    p2.expect(200, "Hit");
    assert_no_p1(&p2);
    let p1 = env.get("/Observation", &t1).await;
    p1.expect(200, "Hit");
    assert_no_p2(&p1);
    assert_eq!(upstream.hits(), 5);
}

#[tokio::test]
async fn a_token_lacking_the_scope_is_refused_before_the_cache() {
    let upstream = FhirUpstream::start().await.unwrap();
    let env = env_with(&upstream, None).await;
    let t1 = env.t1();
    env.get("/Observation/o1", &t1).await.expect(200, "Miss");
    env.get("/Patient/P1", &t1).await.expect(200, "Miss");
    assert_eq!(upstream.hits(), 2);

    // Same patient, no Observation scope: 403 from authorization, no cache header, no byte.
    let conditions_only = env.token("P1", "launch/patient patient/Condition.rs");
    let a = env.get("/Observation/o1", &conditions_only).await;
    a.expect(403, "-");
    assert_eq!(a.code(), "forbidden");
    assert_no_p1(&a);
    let a = env.get("/Observation", &conditions_only).await;
    a.expect(403, "-");
    // No token at all: 401.
    let a = env.send(env.http.get(env.gw.url("/Observation/o1"))).await;
    a.expect(401, "-");
    assert_no_p1(&a);
    assert_eq!(upstream.hits(), 2, "nothing reached the upstream");
    // The allowed neighbour still hits.
    env.get("/Observation/o1", &t1).await.expect(200, "Hit");
    env.get("/Patient/P1", &t1).await.expect(200, "Hit");
}

#[tokio::test]
async fn granular_scopes_never_share_entries_with_broader_grants() {
    let upstream = FhirUpstream::start().await.unwrap();
    let env = env_with(&upstream, None).await;
    let t1 = env.t1();
    let labs_only = env.token(
        "P1",
        "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    // The broad grant caches P1's vital signs.
    env.get("/Observation/o1v", &t1).await.expect(200, "Miss");
    env.get("/Observation/o1v", &t1).await.expect(200, "Hit");
    assert_eq!(upstream.hits(), 1);
    // The laboratory-only grant must not get them from that entry.
    let a = env.get("/Observation/o1v", &labs_only).await;
    assert!(
        a.status == 403 || a.status == 404,
        "{} {}",
        a.status,
        a.text
    );
    assert!(!a.text.contains("p1 vitals"), "{}", a.text);
    assert_ne!(a.cache(), "Hit");
    // Its own allowed read is cached in its own partition.
    env.get("/Observation/o1", &labs_only)
        .await
        .expect(200, "Miss");
    env.get("/Observation/o1", &labs_only)
        .await
        .expect(200, "Hit");
    // A broad searchset is not handed to it either.
    let broad = env.get("/Observation", &t1).await;
    broad.expect(200, "Miss");
    assert!(broad.text.contains("p1 vitals"));
    let narrow = env.get("/Observation", &labs_only).await;
    assert!(!narrow.text.contains("p1 vitals"), "{}", narrow.text);
    assert_ne!(narrow.cache(), "Hit");
}

#[tokio::test]
async fn shared_types_are_shared_and_unbound_tokens_never_cache_compartment_data() {
    let upstream = FhirUpstream::start().await.unwrap();
    let env = env_with(&upstream, None).await;
    let t1 = env.t1();
    let t2 = env.token("P2", "launch/patient patient/*.rs");
    // Practitioner lies outside the Patient compartment. Answers that need no check (broad
    // user or system grants) share one entry...
    let user = env.user("user/*.rs");
    let other_user = env.user("user/Practitioner.rs system/Location.rs");
    env.get("/Practitioner/pr1", &user)
        .await
        .expect(200, "Miss");
    env.get("/Practitioner/pr1", &other_user)
        .await
        .expect(200, "Hit");
    // ...only with grants that may read it...
    let no_practitioner = env.token("P1", "launch/patient patient/Observation.rs");
    env.get("/Practitioner/pr1", &no_practitioner)
        .await
        .expect(403, "-");
    let user_observations = env.user("user/Observation.rs");
    env.get("/Practitioner/pr1", &user_observations)
        .await
        .expect(403, "-");
    assert_eq!(upstream.hits(), 1);
    // ...while patient grants, whose answers phase 7 checks, share one entry per grant: the
    // check of a type outside the compartment does not depend on the patient.
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Hit");
    env.get("/Practitioner/pr1", &t2).await.expect(200, "Hit");
    let narrower = env.token("P2", "launch/patient patient/Practitioner.rs");
    env.get("/Practitioner/pr1", &narrower)
        .await
        .expect(200, "Miss");
    env.get("/Practitioner/pr1", &narrower)
        .await
        .expect(200, "Hit");
    assert_eq!(upstream.hits(), 3);

    // A user-level token on compartment data: never cached, in any direction.
    env.get("/Observation/o1", &t1).await.expect(200, "Miss");
    env.get("/Observation/o1", &user)
        .await
        .expect(200, "Bypass");
    env.get("/Observation/o2", &user)
        .await
        .expect(200, "Bypass");
    env.get("/Observation/o2", &user)
        .await
        .expect(200, "Bypass");
    // P1's entry did not absorb the user's read of P2's record.
    let a = env.get("/Observation/o2", &t1).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_no_p2(&a);
    // _revinclude could pull compartment data into a shared type's search: not shared.
    let a = env
        .get("/Practitioner?_revinclude=Observation:performer", &user)
        .await;
    a.expect(200, "Bypass");
}

#[tokio::test]
async fn hits_are_audited_with_the_patients_they_return() {
    let upstream = FhirUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let env = env_with(&upstream, Some(&audit_dir)).await;
    let t1 = env.t1();
    env.get("/Observation", &t1).await.expect(200, "Miss");
    env.get("/Observation", &t1).await.expect(200, "Hit");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Hit");
    let log = records(&audit_dir);
    assert_eq!(log.len(), 4);
    let patients: Vec<Vec<&str>> = log.iter().map(|e| e.patients().collect()).collect();
    assert_eq!(patients[0], ["P1"]);
    assert_eq!(patients[1], patients[0], "the hit names the same patients");
    assert_eq!(patients[3], patients[2]);
    assert!(log.iter().all(|e| e.client_id() == Some("app-1")));
}

fn records(dir: &Path) -> Vec<AuditEvent> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read(&file).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let (_, event) = fhirgate_audit::search::parse_record(line).unwrap();
            out.push(event);
        }
    }
    out
}

#[tokio::test]
async fn a_grant_shared_answer_that_names_a_patient_is_not_kept() {
    // A broken upstream answers a Practitioner read with P1's Patient resource. Under P1's
    // grant phase 7 lets it through (it is P1's own record) and names P1 in it, so it must
    // not land in the entry every patient with that grant shares.
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Practitioner/odd",
        Canned::resource(&json!({"resourceType": "Patient", "id": "P1",
            "name": [{"family": "Oneperson"}]})),
    );
    upstream.respond(
        "/Practitioner/pr1",
        Canned::resource(&json!({"resourceType": "Practitioner", "id": "pr1"})),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner], READ_SEARCH)]));
    })
    .await;
    let t1 = env.t1();
    let t2 = env.token("P2", "launch/patient patient/*.rs");
    let a = env.get("/Practitioner/odd", &t1).await;
    assert_ne!(a.cache(), "Hit");
    let a = env.get("/Practitioner/odd", &t1).await;
    assert_ne!(a.cache(), "Hit", "not stored: {}", a.text);
    let a = env.get("/Practitioner/odd", &t2).await;
    assert_ne!(a.cache(), "Hit");
    assert_no_p1(&a);
    assert_eq!(upstream.hits(), 3);
    // A clean answer under the same grants is shared.
    env.get("/Practitioner/pr1", &t1).await.expect(200, "Miss");
    env.get("/Practitioner/pr1", &t2).await.expect(200, "Hit");
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn with_context_headers_entries_are_kept_per_principal() {
    // The upstream is told who asks (`X-Fhirgate-*`) and may answer accordingly, so two
    // principals never share an entry even for a shared type; the same principal still hits.
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Practitioner/pr1",
        Canned::resource(&json!({"resourceType": "Practitioner", "id": "pr1"})),
    );
    let env = Env::start(&upstream.base_url(), |c| {
        c.cache = Some(cache(vec![rule(&[Practitioner], READ_SEARCH)]));
        c.authorization.context_headers = true;
    })
    .await;
    let alice = env
        .issuer
        .token()
        .claim("aud", fhirgate_testkit::gateway::PUBLIC_BASE)
        .claim("sub", "alice")
        .claim("scope", "user/*.rs")
        .without_claim("patient")
        .build()
        .unwrap();
    let bob = env
        .issuer
        .token()
        .claim("aud", fhirgate_testkit::gateway::PUBLIC_BASE)
        .claim("sub", "bob")
        .claim("scope", "user/*.rs")
        .without_claim("patient")
        .build()
        .unwrap();
    env.get("/Practitioner/pr1", &alice)
        .await
        .expect(200, "Miss");
    env.get("/Practitioner/pr1", &alice)
        .await
        .expect(200, "Hit");
    env.get("/Practitioner/pr1", &bob).await.expect(200, "Miss");
    env.get("/Practitioner/pr1", &bob).await.expect(200, "Hit");
    assert_eq!(upstream.hits(), 2);
    assert_eq!(
        upstream.last_request().unwrap().headers["x-fhirgate-sub"],
        "bob"
    );
}
