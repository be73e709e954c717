use crate::harness::*;
use serde_json::{Value, json};

const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

#[tokio::test]
async fn o16_introspection_requires_an_authenticated_caller() {
    let h = start().await;
    let url = format!("{}/introspect", h.issuer);
    let resp = h
        .http
        .post(&url)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (401, "invalid_client".into()));
    // A public client naming itself is not authentication.
    let resp = h
        .http
        .post(&url)
        .form(&[("token", "x"), ("client_id", PUBLIC)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h
        .http
        .post(&url)
        .basic_auth(CONF, Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h
        .http
        .post(&url)
        .bearer_auth("not-a-token")
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn active_token_reports_smart_context_and_unknown_is_bare_inactive() {
    let h = start().await;
    let tokens = alice_tokens(&h, SCOPE).await;
    let at = tokens["access_token"].as_str().unwrap();
    let info = introspect_as_conf(&h, at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], PUBLIC);
    assert_eq!(info["scope"], SCOPE);
    assert_eq!(info["patient"], "p1");
    assert_eq!(info["fhirUser"], format!("{}/Patient/p1", h.fhir_base));
    assert_eq!(info["iss"], h.issuer);
    let id = jwt_parts(tokens["id_token"].as_str().unwrap()).1;
    assert_eq!(info["sub"], id["sub"]);
    assert!(info["exp"].as_u64().is_some());
    for bogus in ["invalid_token_value", "a.b.c", ""] {
        if bogus.is_empty() {
            continue;
        }
        assert_eq!(
            introspect_as_conf(&h, bogus).await,
            json!({"active": false})
        );
    }
    // Expired: inactive.
    h.clock.advance(3601);
    assert_eq!(introspect_as_conf(&h, at).await, json!({"active": false}));
}

#[tokio::test]
async fn bearer_token_and_private_key_jwt_callers_may_introspect() {
    let h = start().await;
    let a = assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", |_, _| {});
    let backend: Value = client_credentials(&h, &a, "system/Patient.rs")
        .await
        .json()
        .await
        .unwrap();
    let bt = backend["access_token"].as_str().unwrap();
    let user = alice_tokens(&h, SCOPE).await;
    let at = user["access_token"].as_str().unwrap();
    let resp = h
        .http
        .post(format!("{}/introspect", h.issuer))
        .bearer_auth(bt)
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], true);
    let a = assertion(&h, &h.rs_key, BACKEND_RS, "rs-1", |_, _| {});
    let resp = h
        .http
        .post(format!("{}/introspect", h.issuer))
        .form(&[
            ("token", at),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["active"], true);
}

#[tokio::test]
async fn revoking_the_access_token_ends_the_grant() {
    let h = start().await;
    let tokens = alice_tokens(&h, SCOPE).await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    // Another client cannot revoke it.
    let resp = h
        .http
        .post(format!("{}/revoke", h.issuer))
        .form(&[("token", at), ("client_id", PUBLIC2)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect_as_conf(&h, at).await["active"], true);
    let resp = h
        .http
        .post(format!("{}/revoke", h.issuer))
        .form(&[("token", at), ("client_id", PUBLIC)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect_as_conf(&h, at).await, json!({"active": false}));
    assert_eq!(introspect_as_conf(&h, rt).await, json!({"active": false}));
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", PUBLIC),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn revoking_the_refresh_token_and_unknown_tokens() {
    let h = start().await;
    let tokens = alice_tokens(&h, SCOPE).await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(introspect_as_conf(&h, rt).await["active"], true);
    let url = format!("{}/revoke", h.issuer);
    let resp = h
        .http
        .post(&url)
        .form(&[
            ("token", rt),
            ("token_type_hint", "refresh_token"),
            ("client_id", PUBLIC),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect_as_conf(&h, at).await, json!({"active": false}));
    // RFC 7009: unknown tokens are answered 200 too; unauthenticated callers are not.
    let resp = h
        .http
        .post(&url)
        .form(&[("token", "nothing"), ("client_id", PUBLIC)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h
        .http
        .post(&url)
        .form(&[("token", "nothing")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn minted_tokens_honour_client_scopes_and_introspect() {
    let h = start().await;
    let minted = h
        .server
        .mint_token(fhirgate_authserver::MintRequest {
            client_id: CONF.into(),
            scope: "patient/*.rs".into(),
            patient: Some("p2".into()),
            user: Some("drbob".into()),
            expires_in: std::time::Duration::from_secs(600),
        })
        .unwrap();
    let info = introspect_as_conf(&h, &minted.access_token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["patient"], "p2");
    assert_eq!(info["fhirUser"], format!("{}/Practitioner/d1", h.fhir_base));
    assert!(info["exp"].as_u64().unwrap() - info["iat"].as_u64().unwrap() == 600);
    let too_much = h.server.mint_token(fhirgate_authserver::MintRequest {
        client_id: CONF.into(),
        scope: "system/*.cruds".into(),
        patient: None,
        user: None,
        expires_in: std::time::Duration::from_secs(600),
    });
    assert!(too_much.is_err());
}
