//! Patient-compartment enforcement (§2 F-rows, §5 checks 14–23) with T1 = `patient/*.rs`,
//! patient P1. Every refusal asserts the status, the issue code, that no byte of P2's data
//! came back, and (for requests refused before forwarding) that the upstream saw nothing.

use serde_json::{Value, json};

use crate::{Answer, Env};

const SCOPE_CHALLENGE: &str = "error=\"insufficient_scope\"";

fn entry_ids(a: &Answer) -> Vec<String> {
    a.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e.pointer("/resource/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn f1_reading_another_patients_data_is_403_without_a_byte_of_it() {
    let env = Env::start().await;
    let t1 = env.t1();
    // Check 14: refused from the path alone.
    env.get("/Patient/P2", &t1).await.expect(403, "forbidden");
    assert_eq!(env.upstream.hits(), 0);
    // Observation o2 belongs to P2: the response check refuses it after the upstream read.
    env.get("/Observation/o2", &t1)
        .await
        .expect(403, "forbidden");
    // F16: HEAD is GET.
    let head = env
        .send(
            env.http
                .head(env.gw.url("/Observation/o2"))
                .bearer_auth(&t1),
        )
        .await;
    assert_eq!(head.status, 403);
    let head = env
        .send(env.http.head(env.gw.url("/Patient/P2")).bearer_auth(&t1))
        .await;
    assert_eq!(head.status, 403);
    // Allowed neighbours.
    let own = env.get("/Patient/P1", &t1).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json()["id"], "P1");
    let obs = env.get("/Observation/o1", &t1).await;
    assert_eq!(obs.status, 200, "{}", obs.text);
    let head = env
        .send(
            env.http
                .head(env.gw.url("/Observation/o1"))
                .bearer_auth(&t1),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
}

#[tokio::test]
async fn f1_hide_existence_answers_404() {
    let env = Env::start_with(|c| c.authorization.hide_existence = true).await;
    let t1 = env.t1();
    env.get("/Patient/P2", &t1).await.expect(404, "not-found");
    env.get("/Observation/o2", &t1)
        .await
        .expect(404, "not-found");
    assert_eq!(env.get("/Observation/o1", &t1).await.status, 200);
}

#[tokio::test]
async fn f2_search_without_patient_gets_p1_injected_and_filtered_even_if_upstream_ignores_it() {
    let env = Env::start().await;
    let t1 = env.t1();
    // Check 16.
    let a = env.get("/Observation?code=x", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
    assert_eq!(entry_ids(&a), vec!["o1", "o1v"]);
    assert_eq!(
        env.upstream.last().target,
        "/fhir/Observation?code=x&patient=P1"
    );
    // Upstream base URLs are rewritten to the public base.
    assert!(
        a.text
            .contains("https://fhir.example.test/fhir/Observation/o1"),
        "{}",
        a.text
    );
    // The backstop: an upstream that ignores the constraint still leaks nothing.
    env.upstream.set_naughty(true);
    let a = env.get("/Observation?code=x", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
    assert_eq!(entry_ids(&a), vec!["o1", "o1v"]);
    let a = env.get("/Patient?name=x", &t1).await;
    a.assert_no_p2();
    assert_eq!(entry_ids(&a), vec!["P1"]);
}

#[tokio::test]
async fn f2_without_injection_a_search_naming_no_patient_is_403() {
    let env = Env::start_with(|c| c.authorization.inject_patient = false).await;
    env.get("/Observation?code=x", &env.t1())
        .await
        .expect(403, "forbidden");
    assert_eq!(env.upstream.hits(), 0);
    let ok = env.get("/Observation?patient=P1", &env.t1()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn f3_f4_f5_f7_conflicting_or_unprovable_patient_parameters_are_refused() {
    let env = Env::start().await;
    let t1 = env.t1();
    // Checks 15.
    for query in [
        "/Observation?patient=P2",
        "/Observation?subject=Patient/P2",
        "/Observation?subject:Patient=P2",
        "/Observation?patient=https://fhir.example.test/fhir/Patient/P2",
        "/Observation?patient=P1,P2",
        "/Observation?patient=P1&patient=P2",
        "/Patient?_id=P2",
    ] {
        let a = env.get(query, &t1).await;
        assert_eq!(a.status, 403, "{query}: {}", a.text);
        assert_eq!(a.code(), "forbidden", "{query}");
        a.assert_no_p2();
    }
    // F5, F7: chains and _has cannot be proven to stay in the compartment.
    for query in [
        "/Observation?subject:Patient.name=Smith",
        "/Observation?patient.identifier=x",
        "/Observation?patient._id=P2",
        "/Patient?_has:Observation:patient:code=x",
        "/Patient?link:Patient.identifier=x",
    ] {
        let a = env.get(query, &t1).await;
        assert_eq!(a.status, 400, "{query}: {}", a.text);
        assert_eq!(a.code(), "not-supported", "{query}");
    }
    assert_eq!(env.upstream.hits(), 0);
    // Allowed neighbour: the own patient, named explicitly.
    let a = env.get("/Observation?patient=P1", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(env.upstream.last().target, "/fhir/Observation?patient=P1");
}

#[tokio::test]
async fn f6_included_entries_of_another_patient_are_removed_and_reported() {
    let env = Env::start().await;
    // Check 17.
    let a = env
        .get("/Observation?_include=Observation:subject", &env.t1())
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
    let ids = entry_ids(&a);
    assert!(ids.contains(&"P1".to_owned()), "{ids:?}");
    let suppressed = a.json()["entry"].as_array().unwrap().iter().any(|e| {
        e.pointer("/search/mode") == Some(&json!("outcome"))
            && e.pointer("/resource/issue/0/code") == Some(&json!("suppressed"))
    });
    assert!(suppressed, "{}", a.text);
}

#[tokio::test]
async fn f8_f11_f13_compartments_everything_and_history_of_others_are_403() {
    let env = Env::start().await;
    let t1 = env.t1();
    // Check 18.
    for path in [
        "/Patient/P2/Observation",
        "/Patient/P2/*",
        "/Patient/P2/$everything",
        "/Patient/$everything",
        "/_history",
        "/Observation/_history",
    ] {
        let a = env.get(path, &t1).await;
        assert_eq!(a.status, 403, "{path}: {}", a.text);
        assert_eq!(a.code(), "forbidden", "{path}");
    }
    assert_eq!(env.upstream.hits(), 0);
    // Allowed neighbour: the own compartment, filtered by the backstop.
    let a = env.get("/Patient/P1/Observation", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
}

#[tokio::test]
async fn f12_graphql_is_not_supported_under_patient_scopes() {
    let env = Env::start().await;
    for path in ["/$graphql?query=x", "/Patient/P1/$graphql?query=x"] {
        let a = env.get(path, &env.t1()).await;
        assert!(matches!(a.status, 400 | 403), "{path}: {}", a.text);
        assert!(
            matches!(a.code().as_str(), "not-supported" | "forbidden"),
            "{path}"
        );
    }
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn f9_a_batch_answers_the_p2_entry_with_403_in_place() {
    let env = Env::start().await;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/P1"}},
        {"request": {"method": "GET", "url": "Patient/P2"}},
        {"request": {"method": "GET", "url": "Observation/o2"}},
    ]});
    // Check 19.
    let a = env
        .send(
            env.http
                .post(env.gw.url("/"))
                .bearer_auth(env.t1())
                .header("content-type", "application/fhir+json")
                .body(batch.to_string()),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
    let v = a.json();
    assert_eq!(v["entry"][0]["resource"]["id"], "P1");
    assert_eq!(v["entry"][1]["response"]["status"], "403 Forbidden");
    assert_eq!(v["entry"][2]["response"]["status"], "403 Forbidden");
    // The upstream never saw the P2 entry.
    let forwarded: Value = serde_json::from_slice(&env.upstream.last().body).unwrap();
    assert!(!forwarded.to_string().contains("Patient/P2"), "{forwarded}");
}

#[tokio::test]
async fn f10_post_search_body_naming_p2_is_403_and_p1_is_forwarded_as_the_form() {
    let env = Env::start().await;
    // Check 20.
    let post = |body: &'static str| {
        env.http
            .post(env.gw.url("/Observation/_search"))
            .bearer_auth(env.t1())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    env.send(post("patient=P2")).await.expect(403, "forbidden");
    assert_eq!(env.upstream.hits(), 0);
    let a = env.send(post("code=x")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = env.upstream.last();
    assert_eq!(seen.target, "/fhir/Observation/_search");
    assert_eq!(&seen.body[..], b"code=x&patient=P1");
}

#[tokio::test]
async fn f14_f15_f16_f17_request_shape_tricks_are_refused_before_authorization() {
    let env = Env::start().await;
    let t1 = env.t1();
    // Check 21 (reqwest keeps these targets as written).
    for path in [
        "/Observation/x%2F..%2F..%2FPatient%2FP2",
        "/patient/P2",
        "/Patient/P2;x=y",
        "/Patient/P2%00",
    ] {
        let a = env.get(path, &t1).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        a.assert_no_p2();
    }
    // Check 22.
    let a = env
        .send(
            env.http
                .post(env.gw.url("/Patient/P1"))
                .bearer_auth(&t1)
                .header("x-http-method-override", "DELETE"),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    // F16: TRACE is never forwarded.
    let a = env
        .send(
            env.http
                .request(reqwest::Method::TRACE, env.gw.url("/Patient/P2"))
                .bearer_auth(&t1),
        )
        .await;
    assert!(matches!(a.status, 405 | 501), "{}", a.text);
    // F17.
    let long = format!("/Observation?code={}", "x".repeat(16 * 1024));
    env.get(&long, &t1).await.expect(414, "too-long");
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn f18_f19_writes_must_stay_in_the_compartment() {
    let env = Env::start().await;
    let t1 = env.with_scope("launch/patient patient/Observation.cruds");
    let obs = |patient: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": format!("Patient/{patient}")}})
    };
    let send = |method: reqwest::Method, path: &str, body: Value| {
        env.http
            .request(method, env.gw.url(path))
            .bearer_auth(&t1)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
    };
    // Check 23, F18.
    env.send(send(reqwest::Method::POST, "/Observation", obs("P2")))
        .await
        .expect(403, "forbidden");
    // F19: moving the own Observation to P2.
    let mut moved = obs("P2");
    moved["id"] = json!("o1");
    env.send(send(reqwest::Method::PUT, "/Observation/o1", moved))
        .await
        .expect(403, "forbidden");
    let writes = |env: &Env| {
        env.upstream
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    };
    assert_eq!(writes(&env), 0);
    // Overwriting P2's stored Observation with P1's subject: the stored one is checked first.
    let mut takeover = obs("P1");
    takeover["id"] = json!("o2");
    env.send(send(reqwest::Method::PUT, "/Observation/o2", takeover))
        .await
        .expect(403, "forbidden");
    // A JSON Patch that moves the subject.
    let patch = json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/P2"}]);
    let a = env
        .send(
            env.http
                .patch(env.gw.url("/Observation/o1"))
                .bearer_auth(&t1)
                .header("content-type", "application/json-patch+json")
                .body(patch.to_string()),
        )
        .await;
    a.expect(403, "forbidden");
    assert_eq!(writes(&env), 0);

    // Allowed neighbours: create for P1, update of P1's own Observation pinned to its version.
    let a = env
        .send(send(reqwest::Method::POST, "/Observation", obs("P1")))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let mut own = obs("P1");
    own["id"] = json!("o1");
    let a = env
        .send(send(reqwest::Method::PUT, "/Observation/o1", own))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let put = env.upstream.last();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.headers["if-match"], "W/\"3\"");
    assert_eq!(writes(&env), 2);
}

#[tokio::test]
async fn f20_conditional_writes_get_the_patient_criteria() {
    let env = Env::start().await;
    let t1 = env.with_scope("launch/patient patient/Observation.cruds");
    let a = env
        .send(
            env.http
                .post(env.gw.url("/Observation"))
                .bearer_auth(&t1)
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=X")
                .body(
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                              "subject": {"reference": "Patient/P1"}})
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let seen = env.upstream.last();
    let criteria = seen.headers["if-none-exist"].to_str().unwrap();
    assert!(
        criteria.contains("identifier=X") && criteria.contains("P1"),
        "{criteria}"
    );
    // Check 23: conditional delete is confined to P1.
    let a = env
        .send(
            env.http
                .delete(env.gw.url("/Observation?code=x"))
                .bearer_auth(&t1),
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    let target = env.upstream.last().target;
    assert!(
        target.contains("code=x") && target.contains("P1"),
        "{target}"
    );
    // Naming P2 in the criteria is refused.
    let a = env
        .send(
            env.http
                .delete(env.gw.url("/Observation?patient=P2"))
                .bearer_auth(&t1),
        )
        .await;
    a.expect(403, "forbidden");
}

#[tokio::test]
async fn f21_granular_scopes_confine_reads_and_searches_to_the_category() {
    let env = Env::start().await;
    let lab = env.with_scope("launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory");
    env.get("/Observation/o1v", &lab)
        .await
        .expect(403, "forbidden");
    let a = env.get("/Observation/o1", &lab).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = env.get("/Observation?code=x", &lab).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(entry_ids(&a), vec!["o1"]);
    assert!(
        env.upstream.last().target.contains("category="),
        "{}",
        env.upstream.last().target
    );
}

#[tokio::test]
async fn f22_a_type_the_scopes_do_not_name_is_403_insufficient_scope() {
    let env = Env::start().await;
    let obs_only = env.with_scope("launch/patient patient/Observation.rs");
    let a = env.get("/Condition?patient=P1", &obs_only).await;
    a.expect(403, "forbidden");
    assert!(a.challenge().contains(SCOPE_CHALLENGE), "{}", a.challenge());
    assert!(
        a.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Condition")
    );
    assert_eq!(env.upstream.hits(), 0);
    let a = env.get("/Condition?patient=P1", &env.t1()).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn f23_user_and_system_scopes_carry_no_compartment() {
    let env = Env::start().await;
    let user = env
        .token()
        .claim("scope", "user/*.rs")
        .without_claim("patient")
        .build()
        .unwrap();
    let a = env.get("/Observation/o2", &user).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["id"], "o2");
    // $export needs system/ scopes; a patient token may not start it.
    env.get("/$export", &env.t1())
        .await
        .expect(403, "forbidden");
    let system = env
        .token()
        .claim("scope", "system/*.rs")
        .without_claim("patient")
        .build()
        .unwrap();
    let a = env.get("/$export", &system).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn verification_over_the_buffer_cap_is_502_never_partial() {
    let env = Env::start_with(|c| c.authorization.verify_buffer_max = 300).await;
    let a = env.get("/Observation?code=x", &env.t1()).await;
    a.expect(502, "too-costly");
    assert!(!a.text.contains("o1v"));
}

#[tokio::test]
async fn context_headers_reach_the_upstream_and_cannot_be_forged() {
    let env = Env::start_with(|c| {
        c.authorization.context_headers = true;
        c.authorization.forward_token = false;
    })
    .await;
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .bearer_auth(env.t1())
                .header("x-fhirgate-patient", "P2")
                .header("x-fhirgate-scopes", "system/*.*"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = env.upstream.last();
    assert_eq!(seen.headers["x-fhirgate-patient"], "P1");
    assert_eq!(
        seen.headers["x-fhirgate-scopes"],
        "launch/patient patient/*.rs"
    );
    assert_eq!(seen.headers["x-fhirgate-sub"], "user-1");
    assert_eq!(seen.headers["x-fhirgate-client-id"], "app-1");
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test]
async fn by_default_the_token_is_forwarded_and_client_context_headers_are_dropped() {
    let env = Env::start().await;
    let t1 = env.t1();
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .bearer_auth(&t1)
                .header("x-fhirgate-patient", "P2"),
        )
        .await;
    assert_eq!(a.status, 200);
    let seen = env.upstream.last();
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {t1}")
    );
    assert!(!seen.headers.contains_key("x-fhirgate-patient"));
}

#[tokio::test]
async fn bundles_too_large_to_rewrite_still_leave_with_public_urls_after_verification() {
    let env = Env::start_with(|c| c.limits.bundle_rewrite_max = 64).await;
    let a = env.get("/Observation?code=x", &env.t1()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_no_p2();
    assert!(
        a.text
            .contains("https://fhir.example.test/fhir/Observation/o1"),
        "{}",
        a.text
    );
    assert!(!a.text.contains(&env.upstream.base_url()), "{}", a.text);
}

#[tokio::test]
async fn responses_that_cannot_be_checked_are_refused_before_forwarding() {
    let env = Env::start().await;
    let t1 = env.t1();
    env.get("/Observation/o2?_format=xml", &t1)
        .await
        .expect(400, "not-supported");
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Observation/o2"))
                .bearer_auth(&t1)
                .header("accept", "application/fhir+xml"),
        )
        .await;
    a.expect(400, "not-supported");
    assert_eq!(env.upstream.hits(), 0);
    // JSON, asked either way, is checked and served.
    assert_eq!(
        env.get("/Observation/o1?_format=json", &t1).await.status,
        200
    );
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Observation/o1"))
                .bearer_auth(&t1)
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn f13_instance_history_and_vread_check_every_version() {
    let env = Env::start().await;
    let t1 = env.t1();
    env.get("/Observation/o2/_history/1", &t1)
        .await
        .expect(403, "forbidden");
    let a = env.get("/Observation/o2/_history", &t1).await;
    a.assert_no_p2();
    assert!(
        a.status == 403 || a.json()["entry"].as_array().is_none_or(Vec::is_empty),
        "{}",
        a.text
    );
    // Allowed neighbours: the own Observation's history and versions.
    let a = env.get("/Observation/o1/_history", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["entry"].as_array().unwrap().len(), 2);
    assert_eq!(env.get("/Observation/o1/_history/3", &t1).await.status, 200);
}
