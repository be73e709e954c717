use crate::harness::*;
use serde_json::{Value, json};

async fn create_launch(h: &Harness, body: Value, token: Option<&str>) -> reqwest::Response {
    let mut req = h.http.post(format!("{}/launch", h.issuer)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn launch_endpoint_needs_the_admin_token() {
    let h = start().await;
    assert_eq!(
        create_launch(&h, json!({"patient": "p1"}), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        create_launch(&h, json!({"patient": "p1"}), Some("wrong"))
            .await
            .status(),
        401
    );
    let resp = create_launch(
        &h,
        json!({"patient": "p1", "client_id": PUBLIC}),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["iss"], h.fhir_base);
    let url = body["launch_url"].as_str().unwrap();
    assert!(url.starts_with("https://app.example/launch?iss="));
    assert_eq!(
        query_param(url, "launch").as_deref(),
        body["launch"].as_str()
    );
}

#[tokio::test]
async fn ehr_launch_carries_patient_and_encounter_without_picker() {
    let h = start().await;
    let created: Value = create_launch(
        &h,
        json!({"patient": "p2", "encounter": "e9"}),
        Some(ADMIN_TOKEN),
    )
    .await
    .json()
    .await
    .unwrap();
    let (verifier, challenge) = pkce();
    let mut params = auth_params(
        &h,
        PUBLIC,
        "launch openid fhirUser user/*.rs patient/*.rs",
        &challenge,
    );
    set(&mut params, "launch", created["launch"].as_str());
    // The walker panics if a picker appears (pick = None): the launch decides the patient.
    let w = walk(&h, &params, ("drbob", "bob-password"), &[], None).await;
    let code = query_param(&w.location, "code").expect("code");
    let body: Value = exchange(&h, PUBLIC, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["patient"], "p2");
    assert_eq!(body["encounter"], "e9");
    assert_eq!(
        body["scope"],
        "launch openid fhirUser user/*.rs patient/*.rs"
    );
    let claims = jwt_parts(body["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["patient"], "p2");
    assert_eq!(claims["encounter"], "e9");
}

#[tokio::test]
async fn cli_style_launch_works_too() {
    let h = start().await;
    let created = h
        .server
        .create_launch(Some("p1"), None, Some(PUBLIC), false)
        .unwrap();
    let (verifier, challenge) = pkce();
    let mut params = auth_params(&h, PUBLIC, "launch patient/*.rs", &challenge);
    set(&mut params, "launch", Some(&created.launch));
    let w = walk(&h, &params, ("alice", "alice-password"), &[], None).await;
    let code = query_param(&w.location, "code").unwrap();
    let body: Value = exchange(&h, PUBLIC, &code, &verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["patient"], "p1");
    assert_eq!(body["need_patient_banner"], false);
}

#[tokio::test]
async fn invalid_or_foreign_launch_yields_no_code() {
    let h = start().await;
    let other = h
        .server
        .create_launch(Some("p1"), None, Some(PUBLIC2), true)
        .unwrap();
    let (_, challenge) = pkce();
    for launch in ["INVALID_LAUNCH_PARAM", other.launch.as_str()] {
        let mut params = auth_params(&h, PUBLIC, "launch patient/*.rs", &challenge);
        set(&mut params, "launch", Some(launch));
        let resp = h
            .http
            .get(format!("{}/authorize", h.issuer))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        let loc = location(&resp);
        assert!(loc.starts_with(REDIRECT));
        assert_eq!(
            query_param(&loc, "error").as_deref(),
            Some("invalid_request")
        );
        assert!(query_param(&loc, "code").is_none());
    }
    // An expired launch is as good as unknown.
    let ok = h
        .server
        .create_launch(Some("p1"), None, None, true)
        .unwrap();
    h.clock.advance(3601);
    let mut params = auth_params(&h, PUBLIC, "launch patient/*.rs", &challenge);
    set(&mut params, "launch", Some(&ok.launch));
    let resp = h
        .http
        .get(format!("{}/authorize", h.issuer))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_param(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn patient_user_cannot_open_another_patients_launch() {
    let h = start().await;
    let other = h
        .server
        .create_launch(Some("p2"), None, None, true)
        .unwrap();
    let (_, challenge) = pkce();
    let mut params = auth_params(&h, PUBLIC, "launch patient/*.rs", &challenge);
    set(&mut params, "launch", Some(&other.launch));
    let w = walk(&h, &params, ("alice", "alice-password"), &[], None).await;
    assert_eq!(
        query_param(&w.location, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&w.location, "code").is_none());
}
