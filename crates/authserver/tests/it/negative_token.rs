use crate::harness::*;
use serde_json::json;

async fn token_with(
    h: &Harness,
    client: &str,
    code: &str,
    verifier: Option<&str>,
    redirect: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", client),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    h.http.post(&h.token_url).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn o1_o3_bad_verifiers_are_invalid_grant() {
    let h = start().await;
    let long = "a".repeat(129);
    let random = pkce().0;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no verifier", None),
        ("empty verifier", Some(String::new())),
        ("random verifier", Some(random)),
        ("verifier == challenge (plain)", None),
        ("1 char", Some("a".into())),
        ("129 chars", Some(long)),
    ];
    for (why, verifier) in cases {
        let (code, _, challenge) = alice_code(&h, PUBLIC).await;
        let v = if why.starts_with("verifier ==") {
            Some(challenge)
        } else {
            verifier
        };
        let (status, error) =
            error_of(token_with(&h, PUBLIC, &code, v.as_deref(), REDIRECT).await).await;
        assert_eq!((status, error.as_str()), (400, "invalid_grant"), "{why}");
    }
}

#[tokio::test]
async fn o4_code_replay_fails_and_revokes_first_tokens() {
    let h = start().await;
    let (code, verifier, _) = alice_code(&h, PUBLIC).await;
    let first = token_with(&h, PUBLIC, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(introspect_as_conf(&h, at).await["active"], true);
    assert_eq!(
        error_of(token_with(&h, PUBLIC, &code, Some(&verifier), REDIRECT).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(introspect_as_conf(&h, at).await, json!({"active": false}));
    let rt = first["refresh_token"].as_str().unwrap();
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
async fn codes_expire_after_a_minute() {
    let h = start().await;
    let (code, verifier, _) = alice_code(&h, PUBLIC).await;
    h.clock.advance(61);
    assert_eq!(
        error_of(token_with(&h, PUBLIC, &code, Some(&verifier), REDIRECT).await).await,
        (400, "invalid_grant".into())
    );
}

#[tokio::test]
async fn o5_token_redirect_uri_must_equal_authorize() {
    let h = start().await;
    let (code, verifier, _) = alice_code(&h, PUBLIC).await;
    assert_eq!(
        error_of(
            token_with(
                &h,
                PUBLIC,
                &code,
                Some(&verifier),
                "https://app.example/cb/"
            )
            .await
        )
        .await,
        (400, "invalid_grant".into())
    );
}

#[tokio::test]
async fn o7_code_injection_into_another_client() {
    let h = start().await;
    let (code, verifier, _) = alice_code(&h, PUBLIC).await;
    assert_eq!(
        error_of(token_with(&h, PUBLIC2, &code, Some(&verifier), REDIRECT).await).await,
        (400, "invalid_grant".into())
    );
    let resp = h
        .http
        .post(&h.token_url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn item26_bad_code_and_bad_client() {
    let h = start().await;
    let (code, verifier, _) = alice_code(&h, PUBLIC).await;
    assert_eq!(
        error_of(token_with(&h, PUBLIC, "BAD_CODE", Some(&verifier), REDIRECT).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        error_of(token_with(&h, "BAD_CLIENT_ID", &code, Some(&verifier), REDIRECT).await).await,
        (401, "invalid_client".into())
    );
    // A confidential client cannot skip authentication by naming itself.
    assert_eq!(
        error_of(token_with(&h, CONF, &code, Some(&verifier), REDIRECT).await).await,
        (401, "invalid_client".into())
    );
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "invalid_request".into()));
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[("grant_type", "password"), ("client_id", PUBLIC)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "unsupported_grant_type".into()));
}

#[tokio::test]
async fn o11_secret_brute_force_locks_out_with_429() {
    let h = start().await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    let mut statuses = vec![];
    for _ in 0..6 {
        let resp = h
            .http
            .post(&h.token_url)
            .basic_auth(CONF, Some("guess"))
            .form(&form)
            .send()
            .await
            .unwrap();
        if resp.status() == 401 {
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
        }
        if resp.status() == 429 {
            assert!(resp.headers().get("retry-after").is_some());
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429, 429]);
    // Even the right secret is refused while locked out...
    let resp = h
        .http
        .post(&h.token_url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // ...and accepted once the lockout has passed (the refresh token itself is bogus).
    h.clock.advance(301);
    let resp = h
        .http
        .post(&h.token_url)
        .basic_auth(CONF, Some(CONF_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn o13_errors_are_not_cached_either() {
    let h = start().await;
    let resp = h
        .http
        .post(&h.token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", PUBLIC),
            ("code", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    assert_eq!(resp.status(), 400);
}
