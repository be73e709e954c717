use crate::harness::*;
use fhirgate_authserver::jws::{JwsAlg, Unverified};
use serde_json::Value;

/// Verifies a JWT the way a resource server would: discovery → jwks_uri → kid → RS256.
async fn verify_via_discovery(h: &Harness, token: &str) -> Value {
    let doc: Value = h
        .http
        .get(format!("{}/.well-known/openid-configuration", h.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = h
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = Unverified::parse(token).unwrap();
    let kid = jwt.header_str("kid").unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap();
    assert!(
        jwt.verify(JwsAlg::Rs256, key),
        "signature verifies with the published key"
    );
    Value::Object(jwt.claims.clone())
}

#[tokio::test]
async fn standalone_patient_launch_binds_patient_to_own_record() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let scope = "launch/patient openid fhirUser offline_access patient/*.rs";
    let params = auth_params(&h, PUBLIC, scope, &challenge);
    let w = walk(&h, &params, ("alice", "alice-password"), &[], None).await;
    assert!(w.location.starts_with(REDIRECT));
    assert_eq!(
        query_param(&w.location, "state").as_deref(),
        Some("state-123")
    );
    let code = query_param(&w.location, "code").unwrap();
    let resp = exchange(&h, PUBLIC, &code, &verifier).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], scope);
    assert_eq!(body["patient"], "p1");
    assert_eq!(body["need_patient_banner"], true);
    assert_eq!(
        body["smart_style_url"],
        format!("{}/smart-style.json", h.issuer)
    );
    assert!(body["expires_in"].as_u64().unwrap() <= 3600);
    assert!(body["refresh_token"].is_string());

    let at = body["access_token"].as_str().unwrap();
    let (header, _) = jwt_parts(at);
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    let claims = verify_via_discovery(&h, at).await;
    assert_eq!(claims["iss"], h.issuer);
    assert_eq!(claims["aud"], h.fhir_base);
    assert_eq!(claims["client_id"], PUBLIC);
    assert_eq!(claims["scope"], scope);
    assert_eq!(claims["patient"], "p1");
    assert_eq!(claims["fhirUser"], format!("{}/Patient/p1", h.fhir_base));
    assert!(claims["jti"].is_string() && claims["sub"].is_string());
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 3600, "O15: access token lives at most an hour");

    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(jwt_parts(id_token).0["alg"], "RS256");
    let id = verify_via_discovery(&h, id_token).await;
    assert_eq!(id["aud"], PUBLIC);
    assert_eq!(id["iss"], h.issuer);
    assert_eq!(id["sub"], claims["sub"]);
    assert_eq!(id["fhirUser"], format!("{}/Patient/p1", h.fhir_base));
}

#[tokio::test]
async fn practitioner_picks_a_patient_with_search() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let params = auth_params(
        &h,
        PUBLIC,
        "launch/patient openid fhirUser patient/*.rs",
        &challenge,
    );
    // Look at the picker's search by hand before letting the walker pick.
    let b = browser();
    let resp = b
        .get(format!("{}/authorize", h.issuer))
        .query(&params)
        .send()
        .await
        .unwrap();
    let interact = location(&resp);
    let login = b.get(&interact).send().await.unwrap().text().await.unwrap();
    let resp = b
        .post(format!("{interact}/login"))
        .form(&[
            ("csrf", csrf_of(&login).as_str()),
            ("username", "drbob"),
            ("password", "bob-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let all = b.get(&interact).send().await.unwrap().text().await.unwrap();
    assert!(all.contains("Alice Smith") && all.contains("Carl Jones"));
    let found = b
        .get(&interact)
        .query(&[("q", "carl")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(found.contains("Carl Jones") && !found.contains("Alice Smith"));
    let resp = b
        .post(format!("{interact}/patient"))
        .form(&[("csrf", csrf_of(&found).as_str()), ("patient", "p2")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let consent = b.get(&interact).send().await.unwrap().text().await.unwrap();
    assert!(consent.contains("Carl Jones (p2)"));
    assert!(consent.contains("Read and search all kinds of data for the selected patient"));
    let mut form = vec![
        ("csrf".to_string(), csrf_of(&consent)),
        ("decision".into(), "allow".into()),
    ];
    for s in scope_values(&consent) {
        form.push(("scope".into(), s));
    }
    let resp = b
        .post(format!("{interact}/consent"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let code = query_param(&location(&resp), "code").unwrap();
    let body: Value = exchange(&h, PUBLIC, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["patient"], "p2");
    let claims = jwt_parts(body["access_token"].as_str().unwrap()).1;
    assert_eq!(
        claims["fhirUser"],
        format!("{}/Practitioner/d1", h.fhir_base)
    );
}

#[tokio::test]
async fn picker_refuses_unknown_patient_and_patients_cannot_pick() {
    let h = start().await;
    let (_, challenge) = pkce();
    let params = auth_params(&h, PUBLIC, "launch/patient patient/*.rs", &challenge);
    for (user, pass, patient, want) in [
        ("drbob", "bob-password", "nope", 400),
        ("alice", "alice-password", "p2", 403),
    ] {
        let b = browser();
        let resp = b
            .get(format!("{}/authorize", h.issuer))
            .query(&params)
            .send()
            .await
            .unwrap();
        let interact = location(&resp);
        let login = b.get(&interact).send().await.unwrap().text().await.unwrap();
        b.post(format!("{interact}/login"))
            .form(&[
                ("csrf", csrf_of(&login).as_str()),
                ("username", user),
                ("password", pass),
            ])
            .send()
            .await
            .unwrap();
        let page = b.get(&interact).send().await.unwrap().text().await.unwrap();
        let resp = b
            .post(format!("{interact}/patient"))
            .form(&[("csrf", csrf_of(&page).as_str()), ("patient", patient)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{user}");
    }
}

#[tokio::test]
async fn unticked_scope_is_not_granted() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let params = auth_params(
        &h,
        PUBLIC,
        "launch/patient openid fhirUser patient/Observation.rs patient/Condition.rs",
        &challenge,
    );
    let w = walk(
        &h,
        &params,
        ("alice", "alice-password"),
        &["patient/Condition.rs", "openid"],
        None,
    )
    .await;
    let code = query_param(&w.location, "code").unwrap();
    let body: Value = exchange(&h, PUBLIC, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["scope"],
        "launch/patient fhirUser patient/Observation.rs"
    );
    assert!(
        body.get("id_token").is_none(),
        "openid unticked: no id_token"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_access asked: no refresh token"
    );
}

#[tokio::test]
async fn user_denies_consent() {
    let h = start().await;
    let (_, challenge) = pkce();
    let params = auth_params(&h, PUBLIC, "launch/patient patient/*.rs", &challenge);
    let b = browser();
    let resp = b
        .get(format!("{}/authorize", h.issuer))
        .query(&params)
        .send()
        .await
        .unwrap();
    let interact = location(&resp);
    let login = b.get(&interact).send().await.unwrap().text().await.unwrap();
    b.post(format!("{interact}/login"))
        .form(&[
            ("csrf", csrf_of(&login).as_str()),
            ("username", "alice"),
            ("password", "alice-password"),
        ])
        .send()
        .await
        .unwrap();
    let consent = b.get(&interact).send().await.unwrap().text().await.unwrap();
    let resp = b
        .post(format!("{interact}/consent"))
        .form(&[
            ("csrf", csrf_of(&consent).as_str()),
            ("decision", "deny"),
            ("scope", "patient/*.rs"),
        ])
        .send()
        .await
        .unwrap();
    let loc = location(&resp);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("state-123"));
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn wrong_password_shows_login_again() {
    let h = start().await;
    let (_, challenge) = pkce();
    let params = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    let b = browser();
    let resp = b
        .get(format!("{}/authorize", h.issuer))
        .query(&params)
        .send()
        .await
        .unwrap();
    let interact = location(&resp);
    let login = b.get(&interact).send().await.unwrap().text().await.unwrap();
    let resp = b
        .post(format!("{interact}/login"))
        .form(&[
            ("csrf", csrf_of(&login).as_str()),
            ("username", "alice"),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Wrong username or password")
    );
}

#[tokio::test]
async fn confidential_client_authenticates_with_basic_and_authorize_post_works() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let params = auth_params(
        &h,
        CONF,
        "launch/patient openid fhirUser patient/*.rs user/*.cruds",
        &challenge,
    );
    // POST authorize (SMART 2.x) goes through the same pages.
    let b = browser();
    let resp = b
        .post(format!("{}/authorize", h.issuer))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).contains("/interact/"));
    let w = walk(&h, &params, ("alice", "alice-password"), &[], None).await;
    let code = query_param(&w.location, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let resp = h
        .http
        .post(&h.token_url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    // user/*.cruds is beyond the client's allowed scopes: narrowed away at authorize.
    assert_eq!(body["scope"], "launch/patient openid fhirUser patient/*.rs");
}

#[tokio::test]
async fn loopback_redirect_accepts_any_port() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let mut params = auth_params(&h, PUBLIC, "launch/patient patient/*.rs", &challenge);
    set(
        &mut params,
        "redirect_uri",
        Some("http://127.0.0.1:49152/cb"),
    );
    let w = walk(&h, &params, ("alice", "alice-password"), &[], None).await;
    assert!(w.location.starts_with("http://127.0.0.1:49152/cb?"));
    let code = query_param(&w.location, "code").unwrap();
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:49152/cb"),
            ("code_verifier", verifier.as_str()),
            ("client_id", PUBLIC),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
