//! The router and the small endpoints: discovery, JWKS, style, EHR launch creation,
//! and CORS (open on discovery, registered origins on token-style endpoints).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::util::{ct_eq, origin_of};
use crate::{AuthServer, authorize, interact, introspect, token};

/// Every request body here is a small form or JSON object.
const MAX_BODY: usize = 64 * 1024;

pub fn router(server: AuthServer) -> Router {
    let token_routes = Router::new()
        .route("/token", post(token::token).options(preflight))
        .route(
            "/introspect",
            post(introspect::introspect).options(preflight),
        )
        .route("/revoke", post(introspect::revoke).options(preflight))
        .layer(middleware::from_fn_with_state(
            server.clone(),
            registered_cors,
        ));
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/jwks", get(jwks))
        .route("/smart-style.json", get(style))
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/interact/{id}", get(interact::show))
        .route("/interact/{id}/login", post(interact::login))
        .route("/interact/{id}/patient", post(interact::choose_patient))
        .route("/interact/{id}/consent", post(interact::consent))
        .route("/launch", post(create_launch))
        .merge(token_routes)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(server)
}

/// Discovery is public: any origin may read it (SMART 2.2).
fn open_json(value: Value) -> Response {
    let mut r = Json(value).into_response();
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

async fn openid_configuration(State(s): State<AuthServer>) -> Response {
    open_json(s.openid_configuration())
}

async fn smart_configuration(State(s): State<AuthServer>) -> Response {
    open_json(s.smart_configuration())
}

async fn jwks(State(s): State<AuthServer>) -> Response {
    match s.jwks() {
        Ok(set) => {
            let mut r = open_json(set);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "jwks unavailable");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The stylesheet behind `smart_style_url` (SMART styling, experimental).
async fn style() -> Response {
    open_json(serde_json::json!({
        "color_background": "#f4f6f8",
        "color_error": "#a40e26",
        "color_highlight": "#0b5cad",
        "color_modal_backdrop": "",
        "color_success": "#1a7f37",
        "color_text": "#1b1f23",
        "dim_border_radius": "8px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif"
    }))
}

impl AuthServer {
    fn origin_allowed(&self, origin: &str) -> bool {
        let cfg = &self.inner.config;
        if cfg.cors_origins.iter().any(|o| o == origin) {
            return true;
        }
        // A browser app may call the token endpoint from where it receives its code.
        self.inner
            .store
            .clients()
            .map(|cs| {
                cs.iter()
                    .flat_map(|c| c.redirect_uris.iter())
                    .any(|u| origin_of(u).as_deref() == Some(origin))
            })
            .unwrap_or(false)
    }
}

async fn registered_cors(State(s): State<AuthServer>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let is_preflight = req.method() == Method::OPTIONS;
    let mut resp = next.run(req).await;
    if let Some(origin) = origin.filter(|o| s.origin_allowed(o)) {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if is_preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    resp
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchBody {
    patient: Option<String>,
    encounter: Option<String>,
    client_id: Option<String>,
    need_patient_banner: Option<bool>,
}

/// `POST /launch`: an EHR (or a test) creates a launch context and gets the opaque
/// `launch` value to hand to the app. Guarded by the configured admin token.
async fn create_launch(State(s): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(expected) = s.inner.config.admin_token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !ct_eq(
        &crate::util::sha256(presented.as_bytes()),
        &crate::util::sha256(expected.as_bytes()),
    ) {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let Ok(req) = serde_json::from_slice::<LaunchBody>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected JSON {patient, encounter, client_id}",
        )
            .into_response();
    };
    match s.create_launch(
        req.patient.as_deref(),
        req.encounter.as_deref(),
        req.client_id.as_deref(),
        req.need_patient_banner.unwrap_or(true),
    ) {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
