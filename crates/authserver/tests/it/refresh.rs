use crate::harness::*;
use serde_json::Value;

async fn refresh(h: &Harness, client: &str, rt: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", client),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    h.http.post(&h.token_url).form(&form).send().await.unwrap()
}

const SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

#[tokio::test]
async fn refresh_without_scope_rotates_and_keeps_context() {
    let h = start().await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt = first["refresh_token"].as_str().unwrap();
    let resp = refresh(&h, PUBLIC, rt, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], SCOPE);
    assert_eq!(body["patient"], "p1");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64());
    let rotated = body["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, rt, "refresh tokens rotate");
    assert_eq!(refresh(&h, PUBLIC, rotated, None).await.status(), 200);
}

#[tokio::test]
async fn refresh_with_same_or_narrower_scope() {
    let h = start().await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt = first["refresh_token"].as_str().unwrap().to_string();
    let same: Value = refresh(&h, PUBLIC, &rt, Some(SCOPE))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["scope"], SCOPE);
    let rt2 = same["refresh_token"].as_str().unwrap();
    let narrow: Value = refresh(
        &h,
        PUBLIC,
        rt2,
        Some("patient/Observation.rs offline_access"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(narrow["scope"], "patient/Observation.rs offline_access");
    let claims = jwt_parts(narrow["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["scope"], "patient/Observation.rs offline_access");
}

#[tokio::test]
async fn o10_broader_scope_is_invalid_scope_and_token_survives() {
    let h = start().await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt = first["refresh_token"].as_str().unwrap();
    for broader in ["patient/*.cruds", "user/*.rs", "patient/*.rs system/*.rs"] {
        assert_eq!(
            error_of(refresh(&h, PUBLIC, rt, Some(broader)).await).await,
            (400, "invalid_scope".into()),
            "{broader}"
        );
    }
    assert_eq!(refresh(&h, PUBLIC, rt, None).await.status(), 200);
}

#[tokio::test]
async fn o9_reuse_of_rotated_token_revokes_the_family() {
    let h = start().await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let second: Value = refresh(&h, PUBLIC, rt1, None).await.json().await.unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap();
    let at2 = second["access_token"].as_str().unwrap();
    assert_eq!(
        error_of(refresh(&h, PUBLIC, rt1, None).await).await,
        (400, "invalid_grant".into())
    );
    // The whole family is gone: the newest refresh token and access token too.
    assert_eq!(
        error_of(refresh(&h, PUBLIC, rt2, None).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        introspect_as_conf(&h, at2).await,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client_and_bogus_ones_fail() {
    let h = start().await;
    let first = alice_tokens(&h, SCOPE).await;
    let rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(
        error_of(refresh(&h, PUBLIC2, rt, None).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        error_of(refresh(&h, PUBLIC, "bogus-refresh-token", None).await).await,
        (400, "invalid_grant".into())
    );
    // The legitimate client still can refresh after the foreign attempt.
    assert_eq!(refresh(&h, PUBLIC, rt, None).await.status(), 200);
}

#[tokio::test]
async fn expired_refresh_token_is_refused() {
    let h = start().await;
    let first = alice_tokens(&h, "launch/patient online_access patient/*.rs").await;
    let rt = first["refresh_token"].as_str().unwrap();
    h.clock.advance(13 * 3600);
    assert_eq!(
        error_of(refresh(&h, PUBLIC, rt, None).await).await,
        (400, "invalid_grant".into())
    );
}
