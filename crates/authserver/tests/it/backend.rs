use crate::harness::*;
use serde_json::{Value, json};

#[tokio::test]
async fn rs384_inline_jwks_gets_a_short_token() {
    let h = start().await;
    let a = assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", |_, _| {});
    let resp = client_credentials(&h, &a, "system/Observation.rs system/Patient.rs").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "system/Observation.rs system/Patient.rs");
    assert!(
        body["expires_in"].as_u64().unwrap() <= 300,
        "O15: backend tokens ≤ 5 min"
    );
    assert!(body.get("refresh_token").is_none());
    let claims = jwt_parts(body["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["sub"], BACKEND_RS);
    assert_eq!(claims["client_id"], BACKEND_RS);
    assert_eq!(claims["aud"], h.fhir_base);
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 300);
}

#[tokio::test]
async fn es384_by_jwks_url_works() {
    let h = start().await;
    let a = assertion(&h, &h.es_key, BACKEND_ES, "es-1", |_, _| {});
    let resp = client_credentials(&h, &a, "system/Observation.rs").await;
    assert_eq!(resp.status(), 200);
    // jku naming the registered URL is fine.
    let url = h.jwks_url.clone();
    let a = assertion(&h, &h.es_key, BACKEND_ES, "es-1", |hd, _| {
        hd["jku"] = json!(url)
    });
    assert_eq!(
        client_credentials(&h, &a, "system/Observation.rs")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn o14_assertion_checks() {
    let h = start().await;
    let rs =
        |tweak: fn(&mut Value, &mut Value)| assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", tweak);
    let cases: Vec<(&str, String)> = vec![
        (
            "exp beyond five minutes",
            rs(|_, c| c["exp"] = json!(c["exp"].as_u64().unwrap() + 120)),
        ),
        (
            "expired",
            rs(|_, c| c["exp"] = json!(c["exp"].as_u64().unwrap() - 600)),
        ),
        (
            "aud is the issuer, not the token URL",
            rs(|_, c| c["aud"] = json!(c["aud"].as_str().unwrap().trim_end_matches("/token"))),
        ),
        (
            "aud array with extra audience",
            rs(|_, c| c["aud"] = json!([c["aud"], "https://other.example"])),
        ),
        (
            "sub differs from iss",
            rs(|_, c| c["sub"] = json!("someone-else")),
        ),
        (
            "unregistered jku",
            rs(|h, _| h["jku"] = json!("https://evil.example/jwks")),
        ),
        ("unknown kid", rs(|h, _| h["kid"] = json!("nope"))),
        ("RS256 not accepted", rs(|h, _| h["alg"] = json!("RS256"))),
        ("alg none", rs(|h, _| h["alg"] = json!("none"))),
        (
            "no jti",
            rs(|_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
    ];
    for (why, a) in cases {
        assert_eq!(
            error_of(client_credentials(&h, &a, "system/Patient.rs").await).await,
            (401, "invalid_client".into()),
            "{why}"
        );
    }
    // Signed by a key that is not the client's.
    let stranger = ClientKey::rsa();
    let a = assertion(&h, &stranger, BACKEND_RS, "rs-1", |_, _| {});
    assert_eq!(
        error_of(client_credentials(&h, &a, "system/Patient.rs").await).await,
        (401, "invalid_client".into())
    );
    // Replay of the same jti.
    let a = assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", |_, _| {});
    assert_eq!(
        client_credentials(&h, &a, "system/Patient.rs")
            .await
            .status(),
        200
    );
    assert_eq!(
        error_of(client_credentials(&h, &a, "system/Patient.rs").await).await,
        (401, "invalid_client".into())
    );
}

#[tokio::test]
async fn bad_grant_type_and_assertion_type() {
    let h = start().await;
    let a = assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", |_, _| {});
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "not_a_grant_type"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "unsupported_grant_type".into()));
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "not_an_assertion_type"),
            ("client_assertion", &a),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn scope_is_capped_by_client_policy() {
    let h = start().await;
    let a = assertion(&h, &h.es_key, BACKEND_ES, "es-1", |_, _| {});
    let body: Value = client_credentials(&h, &a, "system/Observation.rs system/Condition.rs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "system/Observation.rs");
    let a = assertion(&h, &h.es_key, BACKEND_ES, "es-1", |_, _| {});
    assert_eq!(
        error_of(client_credentials(&h, &a, "system/Condition.rs patient/*.rs").await).await,
        (400, "invalid_scope".into())
    );
}

#[tokio::test]
async fn public_and_symmetric_clients_cannot_use_client_credentials() {
    let h = start().await;
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", PUBLIC),
            ("scope", "system/*.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "unauthorized_client".into()));
    let resp = h
        .http
        .post(&h.token_url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "unauthorized_client".into()));
}
