//! The demo SMART app, served at `/app/` from files compiled into the binary, plus the
//! `config.json` that tells it where the FHIR base is and which client it is. The app is a
//! static page: everything it learns about the server comes from that file and from SMART
//! discovery, exactly as for an app hosted anywhere else.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;

const INDEX_HTML: &str = include_str!("../../assets/app/index.html");
const APP_JS: &str = include_str!("../../assets/app/app.js");
const APP_CSS: &str = include_str!("../../assets/app/app.css");

/// The app's path; the registered redirect URI is `{origin}{APP_PATH}/`.
pub const APP_PATH: &str = "/app";

/// What the app reads from `config.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    pub fhir_base: String,
    pub client_id: String,
    pub scope: String,
    pub redirect_uri: String,
}

/// Routes for `/app`, `/app/` and the app's files, with full paths (the gateway passes
/// mounted services the unstripped path).
pub fn router(config: AppConfig) -> Router {
    let config_json = serde_json::to_string_pretty(&config).unwrap_or_else(|_| "{}".into());
    Router::new()
        .route(
            APP_PATH,
            get(|| async { Redirect::to(&format!("{APP_PATH}/")) }),
        )
        .route(
            &format!("{APP_PATH}/"),
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            &format!("{APP_PATH}/index.html"),
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            &format!("{APP_PATH}/app.js"),
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            &format!("{APP_PATH}/app.css"),
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            &format!("{APP_PATH}/config.json"),
            get(move || {
                let body = config_json.clone();
                async move { asset("application/json", body) }
            }),
        )
}

fn asset(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = body.into().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The binary may be upgraded between runs; a stale app.js against a new config is confusing.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The app only talks to its own origin; this keeps an injected script from sending
    // the access token anywhere else.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};

    fn config() -> AppConfig {
        AppConfig {
            fhir_base: "http://127.0.0.1:9/fhir".into(),
            client_id: "demo-app".into(),
            scope: "launch/patient openid".into(),
            redirect_uri: "http://127.0.0.1:9/app/".into(),
        }
    }

    async fn oneshot(router: axum::Router, request: Request<Body>) -> Response {
        use tower::ServiceExt;
        match router.oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    async fn get(path: &str) -> (StatusCode, String, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = oneshot(router(config()), request).await;
        let status = response.status();
        let ct = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        (
            status,
            ct,
            if location.is_empty() { text } else { location },
        )
    }

    #[tokio::test]
    async fn serves_each_file_with_its_content_type() {
        let (s, ct, body) = get("/app/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/html"));
        assert!(body.contains("<script src=\"app.js\">"));
        let (s, ct, _) = get("/app/app.js").await;
        assert_eq!(
            (s, ct.starts_with("text/javascript")),
            (StatusCode::OK, true)
        );
        let (s, ct, _) = get("/app/app.css").await;
        assert_eq!((s, ct.starts_with("text/css")), (StatusCode::OK, true));
        let (s, _, _) = get("/app/missing.js").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bare_path_redirects_to_the_directory() {
        let (s, _, location) = get("/app").await;
        assert!(s.is_redirection());
        assert_eq!(location, "/app/");
    }

    #[tokio::test]
    async fn config_names_the_client_and_the_fhir_base() {
        let (s, ct, body) = get("/app/config.json").await;
        assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["fhirBase"], "http://127.0.0.1:9/fhir");
        assert_eq!(v["clientId"], "demo-app");
        assert_eq!(v["redirectUri"], "http://127.0.0.1:9/app/");
        assert_eq!(v["scope"], "launch/patient openid");
    }
}
