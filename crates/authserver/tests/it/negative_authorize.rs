use crate::harness::*;

async fn authorize(h: &Harness, params: &[(String, String)]) -> reqwest::Response {
    h.http
        .get(format!("{}/authorize", h.issuer))
        .query(params)
        .send()
        .await
        .unwrap()
}

/// Asserts an RFC 6749 §4.1.2.1 error redirect to the registered URI without a code.
async fn assert_error_redirect(h: &Harness, params: &[(String, String)], error: &str, why: &str) {
    let resp = authorize(h, params).await;
    assert_eq!(resp.status(), 303, "{why}");
    let loc = location(&resp);
    assert!(loc.starts_with(REDIRECT), "{why}: {loc}");
    assert_eq!(query_param(&loc, "error").as_deref(), Some(error), "{why}");
    assert!(query_param(&loc, "code").is_none(), "{why}");
}

#[tokio::test]
async fn o1_pkce_is_required_and_plain_refused() {
    let h = start().await;
    let (verifier, challenge) = pkce();
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    set(&mut p, "code_challenge", None);
    set(&mut p, "code_challenge_method", None);
    assert_error_redirect(
        &h,
        &p,
        "invalid_request",
        "no challenge (O2: no code to downgrade)",
    )
    .await;
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    set(&mut p, "code_challenge_method", Some("plain"));
    assert_error_redirect(&h, &p, "invalid_request", "plain").await;
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &verifier);
    set(&mut p, "code_challenge_method", None);
    assert_error_redirect(&h, &p, "invalid_request", "method omitted means plain").await;
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", "short");
    set(&mut p, "code_challenge_method", Some("S256"));
    assert_error_redirect(&h, &p, "invalid_request", "challenge not a SHA-256").await;
}

#[tokio::test]
async fn o6_state_is_required() {
    let h = start().await;
    let (_, challenge) = pkce();
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    set(&mut p, "state", None);
    assert_error_redirect(&h, &p, "invalid_request", "no state").await;
}

#[tokio::test]
async fn o8_aud_must_be_the_fhir_base() {
    let h = start().await;
    let (_, challenge) = pkce();
    for aud in [
        Some("https://inferno.healthit.gov/invalid_aud"),
        Some("http://127.0.0.1/fhir"),
        None,
    ] {
        let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
        set(&mut p, "aud", aud);
        assert_error_redirect(&h, &p, "invalid_request", &format!("aud {aud:?}")).await;
    }
}

#[tokio::test]
async fn other_request_errors_redirect_with_state() {
    let h = start().await;
    let (_, challenge) = pkce();
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    set(&mut p, "response_type", Some("token"));
    assert_error_redirect(&h, &p, "unsupported_response_type", "implicit").await;
    let p = auth_params(&h, CONF, "system/*.rs user/*.cruds", &challenge);
    assert_error_redirect(&h, &p, "invalid_scope", "nothing grantable").await;
    let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    p.push(("scope".into(), "user/*.rs".into()));
    assert_error_redirect(&h, &p, "invalid_request", "repeated parameter").await;
    let resp = authorize(&h, &auth_params(&h, PUBLIC, "", &challenge)).await;
    assert_eq!(
        query_param(&location(&resp), "state").as_deref(),
        Some("state-123")
    );
}

#[tokio::test]
async fn o5_redirect_uri_must_match_exactly_else_error_page() {
    let h = start().await;
    let (_, challenge) = pkce();
    let bad = [
        "https://app.example/cb/",
        "https://app.example/cb/extra",
        "https://app.example/cbx",
        "https://app.example/c",
        "https://evil.app.example/cb",
        "https://app.example.evil.example/cb",
        "https://app.example@evil.example/cb",
        "https://user@app.example/cb",
        "https://app.example//cb",
        "https://app.example/\\cb",
        "https://app.example:8443/cb",
        "https://APP.EXAMPLE/cb",
        "https://app.example/CB",
        "https://app.example/cb#x",
        "http://app.example/cb",
        "http://127.0.0.1:8080/cb/../cb",
        "http://127.0.0.2/cb",
    ];
    for uri in bad {
        let mut p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
        set(&mut p, "redirect_uri", Some(uri));
        let resp = authorize(&h, &p).await;
        assert_eq!(resp.status(), 400, "{uri}");
        assert!(resp.headers().get("location").is_none(), "{uri}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        assert!(
            resp.text().await.unwrap().contains("not registered"),
            "{uri}"
        );
    }
    // Unknown client and missing redirect_uri: error page too.
    let mut p = auth_params(&h, "BAD_CLIENT_ID", "patient/*.rs", &challenge);
    assert_eq!(authorize(&h, &p).await.status(), 400);
    set(&mut p, "client_id", Some(PUBLIC));
    set(&mut p, "redirect_uri", None);
    let resp = authorize(&h, &p).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn o12_forms_need_csrf_and_same_origin() {
    let h = start().await;
    let (_, challenge) = pkce();
    let p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    let b = browser();
    let interact = location(
        &b.get(format!("{}/authorize", h.issuer))
            .query(&p)
            .send()
            .await
            .unwrap(),
    );
    let page = b.get(&interact).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&page);
    let creds = [("username", "alice"), ("password", "alice-password")];
    let resp = b
        .post(format!("{interact}/login"))
        .form(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no csrf");
    let resp = b
        .post(format!("{interact}/login"))
        .form(&[creds[0], creds[1], ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "wrong csrf");
    let resp = b
        .post(format!("{interact}/login"))
        .header("Origin", "https://evil.example")
        .form(&[creds[0], creds[1], ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "cross-site origin");
    // Another browser (no session cookie) cannot drive this request even with the token.
    let resp = browser()
        .post(format!("{interact}/login"))
        .form(&[creds[0], creds[1], ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "foreign session");
    let resp = b
        .post(format!("{interact}/login"))
        .header("Origin", &h.origin)
        .form(&[creds[0], creds[1], ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "same origin with csrf");
    // The login rotated the CSRF token: the old one no longer works on consent.
    let resp = b
        .post(format!("{interact}/consent"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("decision", "allow"),
            ("scope", "patient/*.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn o13_pages_refuse_framing_and_set_a_safe_cookie() {
    let h = start().await;
    let (_, challenge) = pkce();
    let p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    let resp = h
        .http
        .get(format!("{}/authorize", h.issuer))
        .query(&p)
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/auth")
    );
    assert!(
        !cookie.contains("Secure"),
        "http issuer: no Secure flag (https issuers get one)"
    );
    let b = browser();
    let interact = location(
        &b.get(format!("{}/authorize", h.issuer))
            .query(&p)
            .send()
            .await
            .unwrap(),
    );
    let resp = b.get(&interact).send().await.unwrap();
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<label for=\"username\">") && html.contains("name=\"viewport\""));
}

#[tokio::test]
async fn login_lockout_after_repeated_failures() {
    let h = start().await;
    let (_, challenge) = pkce();
    let p = auth_params(&h, PUBLIC, "patient/*.rs", &challenge);
    let b = browser();
    let interact = location(
        &b.get(format!("{}/authorize", h.issuer))
            .query(&p)
            .send()
            .await
            .unwrap(),
    );
    let mut statuses = vec![];
    for _ in 0..6 {
        let page = b.get(&interact).send().await.unwrap().text().await.unwrap();
        let resp = b
            .post(format!("{interact}/login"))
            .form(&[
                ("csrf", csrf_of(&page).as_str()),
                ("username", "alice"),
                ("password", "nope-nope"),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429]);
}
