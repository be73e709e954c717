use crate::harness::*;
use serde_json::Value;

#[tokio::test]
async fn smart_configuration_is_open_json_with_absolute_urls() {
    let h = start().await;
    let resp = h
        .http
        .get(format!("{}/.well-known/smart-configuration", h.issuer))
        .header("Origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc, h.server.smart_configuration());
    assert_eq!(doc["token_endpoint"], format!("{}/token", h.issuer));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/authorize", h.issuer)
    );
    assert_eq!(doc["issuer"], h.issuer);
    let methods = doc["code_challenge_methods_supported"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "S256"));
    assert!(!methods.iter().any(|m| m == "plain"));
    let caps: Vec<&str> = doc["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "permission-v2",
        "context-standalone-patient",
    ] {
        assert!(caps.contains(&c), "{c}");
    }
}

#[tokio::test]
async fn openid_configuration_and_jwks_are_served() {
    let h = start().await;
    let doc: Value = h
        .http
        .get(format!("{}/.well-known/openid-configuration", h.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for f in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(doc.get(f).is_some(), "{f}");
    }
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    let jwks: Value = h
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert!(key["kid"].is_string() && key["n"].is_string() && key["e"].is_string());
    assert!(
        key.get("d").is_none(),
        "private part must never be published"
    );
}

#[tokio::test]
async fn rotated_keys_keep_old_tokens_verifiable() {
    let h = start().await;
    let before = h.server.jwks().unwrap()["keys"].as_array().unwrap().len();
    let token = alice_tokens(&h, "launch/patient patient/*.rs").await;
    let at = token["access_token"].as_str().unwrap();
    let old_kid = jwt_parts(at).0["kid"].as_str().unwrap().to_string();
    let new_kid = h.server.rotate_keys().unwrap();
    assert_ne!(old_kid, new_kid);
    let jwks: Value = h
        .http
        .get(format!("{}/jwks", h.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), before + 1);
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    // The old token is still active; new tokens use the new key.
    assert_eq!(introspect_as_conf(&h, at).await["active"], true);
    let fresh = alice_tokens(&h, "launch/patient patient/*.rs").await;
    assert_eq!(
        jwt_parts(fresh["access_token"].as_str().unwrap()).0["kid"],
        new_kid
    );
}

#[tokio::test]
async fn token_endpoint_cors_only_for_registered_origins() {
    let h = start().await;
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://cors.example", true),
        ("https://evil.example", false),
    ] {
        let resp = h
            .http
            .request(reqwest::Method::OPTIONS, &h.token_url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        let acao = resp
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(acao.as_deref() == Some(origin), allowed, "{origin}");
        let resp = h
            .http
            .post(&h.token_url)
            .header("Origin", origin)
            .form(&[("grant_type", "nope")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}
