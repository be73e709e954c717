//! Authentication at gateway level (§1 J-rows, §5 checks 1–13): exact status, issue code and
//! challenge, and the upstream never sees a rejected request.

use fhirgate_testkit::gateway::PUBLIC_BASE;
use fhirgate_testkit::issuer::Canary;
use fhirgate_testkit::mint::{TestKey, flip_signature_bit, now_secs};

use crate::Env;

const REALM: &str = "Bearer realm=\"https://fhir.example.test/fhir\"";

#[tokio::test]
async fn no_token_is_401_login_with_a_bare_challenge() {
    let env = Env::start().await;
    let a = env.get_anonymous("/Patient/P1").await;
    a.expect(401, "login");
    assert_eq!(a.challenge(), REALM);
    assert_eq!(env.upstream.hits(), 0);
    // The allow next to it: the same request with T1 reaches the upstream.
    let ok = env.get("/Patient/P1", &env.t1()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(env.upstream.hits(), 1);
    // Only the issuer URL is configured: its keys were found through discovery and JWKS.
    assert!(env.issuer.discovery_fetches() >= 1);
    assert_eq!(env.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_401_and_never_forwarded() {
    let env = Env::start().await;
    let now = now_secs();
    let rsa_public = env.issuer.k1.rsa_public_key_forms().unwrap();
    let valid = env.t1();
    let cases: Vec<(&str, String, &str)> = vec![
        // J1 / check 2
        (
            "alg none",
            env.token()
                .header("alg", "none")
                .unsigned()
                .build()
                .unwrap(),
            "unknown",
        ),
        // J2 / check 3
        (
            "HS256 with the RSA public key",
            env.token()
                .header("alg", "HS256")
                .hmac_secret(&rsa_public[0])
                .build()
                .unwrap(),
            "unknown",
        ),
        // J6 / check 4
        (
            "expired",
            env.token()
                .claim("iat", now - 400)
                .claim("exp", now - 120)
                .build()
                .unwrap(),
            "expired",
        ),
        // J7 / check 5
        (
            "nbf in the future",
            env.token().claim("nbf", now + 300).build().unwrap(),
            "expired",
        ),
        // J10 / check 6
        (
            "iss with trailing slash",
            env.token()
                .claim("iss", format!("{}/", env.issuer.issuer()))
                .build()
                .unwrap(),
            "unknown",
        ),
        (
            "iss prefix",
            env.token()
                .claim("iss", format!("{}.evil", env.issuer.issuer()))
                .build()
                .unwrap(),
            "unknown",
        ),
        // J11/J12 / check 7
        (
            "aud of another server",
            env.token()
                .claim("aud", "https://other/fhir")
                .build()
                .unwrap(),
            "unknown",
        ),
        (
            "aud missing",
            env.token().without_claim("aud").build().unwrap(),
            "unknown",
        ),
        // J13 / check 8
        (
            "bit-flipped signature",
            flip_signature_bit(&valid).unwrap(),
            "unknown",
        ),
        (
            "stripped signature",
            env.token().unsigned().build().unwrap(),
            "unknown",
        ),
        // J9
        (
            "no exp",
            env.token().without_claim("exp").build().unwrap(),
            "unknown",
        ),
        // J14
        ("not a JWT", "a.b".to_owned(), "unknown"),
    ];
    for (what, token, code) in cases {
        let a = env.get("/Patient/P1", &token).await;
        assert_eq!(a.status, 401, "{what}: {}", a.text);
        assert_eq!(a.code(), code, "{what}");
        let challenge = a.challenge();
        assert!(challenge.starts_with(REALM), "{what}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains("error_description=\""),
            "{what}: {challenge}"
        );
        // The token is never echoed.
        assert!(!a.text.contains(&token), "{what}");
        assert!(!challenge.contains(&token), "{what}");
    }
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn jku_and_jwk_headers_are_never_fetched() {
    let env = Env::start().await;
    let canary = Canary::start().await.unwrap();
    let attacker = TestKey::rsa("k1").unwrap();
    for (name, value) in [
        ("jku", serde_json::json!(canary.url("/jwks"))),
        ("x5u", serde_json::json!(canary.url("/cert"))),
        ("jwk", attacker.jwk()),
    ] {
        let token = env
            .token()
            .header(name, value)
            .signed_by(&attacker)
            .build()
            .unwrap();
        let a = env.get("/Patient/P1", &token).await;
        a.expect(401, "unknown");
    }
    assert_eq!(canary.hits(), 0);
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn credentials_must_be_presented_exactly_once() {
    let env = Env::start().await;
    let token = env.t1();
    // J23: header plus query parameter.
    let a = env
        .send(
            env.http
                .get(env.gw.url(&format!("/Patient/P1?access_token={token}")))
                .bearer_auth(&token),
        )
        .await;
    a.expect(400, "invalid");
    assert!(
        a.challenge().contains("error=\"invalid_request\""),
        "{}",
        a.challenge()
    );
    // Two Authorization headers.
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .header("authorization", format!("Bearer {token}"))
                .header("authorization", format!("Bearer {token}")),
        )
        .await;
    a.expect(400, "invalid");
    assert_eq!(env.upstream.hits(), 0);

    // Allowed neighbours: lower-case scheme, and the query parameter alone, which is moved
    // into a header so the token never reaches the upstream's query string.
    let a = env
        .send(
            env.http
                .get(env.gw.url("/Patient/P1"))
                .header("authorization", format!("bearer {token}")),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = env
        .send(
            env.http
                .get(env.gw.url(&format!("/Patient/P1?access_token={token}"))),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = env.upstream.last();
    assert_eq!(seen.target, "/fhir/Patient/P1");
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {token}")
    );
}

#[tokio::test]
async fn oversized_authorization_header_is_431() {
    let env = Env::start().await;
    // Over limits.max_header_size (32KiB) but within what hyper buffers, so the gateway answers.
    let huge = "a".repeat(36 * 1024);
    let a = env.get("/Patient/P1", &huge).await;
    a.expect(431, "too-long");
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn unknown_kid_flood_costs_at_most_two_fetches_and_rotation_works() {
    let env = Env::start().await;
    assert_eq!(env.get("/Patient/P1", &env.t1()).await.status, 200);
    let before = env.issuer.jwks_fetches();
    // Check 10.
    for i in 0..20 {
        let token = env
            .token()
            .header("kid", format!("random-{i}"))
            .build()
            .unwrap();
        env.get("/Patient/P1", &token).await.expect(401, "unknown");
    }
    assert!(
        env.issuer.jwks_fetches() - before <= 2,
        "{} fetches",
        env.issuer.jwks_fetches() - before
    );
    assert_eq!(env.upstream.hits(), 1);
}

#[tokio::test]
async fn a_key_added_by_rotation_is_accepted() {
    let env = Env::start().await;
    assert_eq!(env.get("/Patient/P1", &env.t1()).await.status, 200);
    // Check 11 / J20.
    let k3 = TestKey::rsa("k3").unwrap();
    env.issuer.add_key(k3.clone());
    let token = env
        .issuer
        .token_with(&k3, "RS256", now_secs())
        .claim("aud", PUBLIC_BASE)
        .build()
        .unwrap();
    let a = env.get("/Patient/P1", &token).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn with_the_issuer_down_cached_keys_work_and_unknown_kids_fail_closed() {
    let env = Env::start().await;
    assert_eq!(env.get("/Patient/P1", &env.t1()).await.status, 200);
    env.issuer.set_outage(true);
    // Check 12 / J21: a new token signed with the cached key.
    let a = env.get("/Patient/P1", &env.t1()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let k9 = TestKey::rsa("k9").unwrap();
    let unknown = env
        .issuer
        .token_with(&k9, "RS256", now_secs())
        .claim("aud", PUBLIC_BASE);
    let a = env.get("/Patient/P1", &unknown.build().unwrap()).await;
    match a.status {
        503 => {
            assert_eq!(a.code(), "transient");
            assert!(a.headers.contains_key("retry-after"));
        }
        401 => assert_eq!(a.code(), "unknown"),
        other => panic!("unexpected {other}: {}", a.text),
    }
    assert_eq!(env.upstream.hits(), 2);
}

#[tokio::test]
async fn opaque_tokens_go_through_introspection_and_fail_closed() {
    let env = Env::start_full(
        |issuer, entry| {
            entry.introspection = Some(fhirgate_tokens::IntrospectionConfig {
                endpoint: issuer.introspection_endpoint(),
                client_id: fhirgate_testkit::issuer::INTROSPECTION_CLIENT_ID.to_owned(),
                client_secret_env: Some("FHIRGATE_TEST_INTROSPECTION_SECRET".to_owned()),
                ..Default::default()
            });
        },
        |_| {},
    )
    .await;
    env.issuer.activate_opaque(
        "opaque-p1",
        serde_json::json!({"scope": "patient/*.rs", "patient": "P1", "client_id": "app-1",
                           "aud": PUBLIC_BASE, "exp": now_secs() + 300}),
    );
    // J24: active, with SMART context from the introspection answer.
    let a = env.get("/Observation/o1", "opaque-p1").await;
    assert_eq!(a.status, 200, "{}", a.text);
    env.get("/Observation/o2", "opaque-p1")
        .await
        .expect(403, "forbidden");
    // Unknown (inactive) token.
    env.get("/Observation/o1", "opaque-unknown")
        .await
        .expect(401, "unknown");
    // Introspection down: fail closed with 503 and Retry-After.
    env.issuer.set_outage(true);
    let a = env.get("/Observation/o1", "opaque-other").await;
    a.expect(503, "transient");
    assert!(a.headers.contains_key("retry-after"));
    assert!(a.challenge().is_empty());
}
