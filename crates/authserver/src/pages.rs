//! Server-rendered pages (minijinja templates compiled into the binary) and the headers
//! every page carries: no framing, no caching, no scripts.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use crate::error::Result;

#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new() -> Result<Self> {
        let mut env = Environment::new();
        env.add_template("base.html", include_str!("templates/base.html"))?;
        env.add_template("login.html", include_str!("templates/login.html"))?;
        env.add_template("picker.html", include_str!("templates/picker.html"))?;
        env.add_template("consent.html", include_str!("templates/consent.html"))?;
        env.add_template("error.html", include_str!("templates/error.html"))?;
        Ok(Self { env })
    }

    /// Renders a page; a template failure becomes a plain 500 rather than a panic.
    pub fn render<S: Serialize>(&self, status: StatusCode, name: &str, ctx: S) -> Response {
        let body = self.env.get_template(name).and_then(|t| t.render(ctx));
        match body {
            Ok(html) => with_page_headers((status, Html(html)).into_response()),
            Err(err) => {
                tracing::error!(error = %err, template = name, "page rendering failed");
                with_page_headers(
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
                )
            }
        }
    }

    /// The error page, for failures that must not redirect (unknown client, bad redirect).
    pub fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        self.render(
            status,
            "error.html",
            minijinja::context! { code => code, message => message },
        )
    }
}

/// Anti-framing (RFC 9700 §4.16), no caching of pages that carry CSRF tokens, and a CSP
/// that allows no script at all.
pub fn with_page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
