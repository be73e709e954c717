//! The gateway's own logic: the named phases of DESIGN.md §3, run in order for every FHIR
//! request. Each phase is one module; they share one [`RequestCtx`].
//!
//! Phases not built yet (throttle, cache, audit) are simply
//! absent: they slot in where the comments in [`Pipeline::run`] say.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use fhirgate_fhir::Interaction;
use http::{Method, Request, Response};

use crate::config::{GatewayConfig, Limits, base_path};
use crate::ctx::RequestCtx;
use crate::error::{GatewayError, error_chain};
use crate::security::Security;
use crate::upstream::{BuildError, Upstream};
use crate::{authenticate, authorize, classify, forward, smart_discovery, verify};

pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

pub(crate) struct Pipeline {
    pub(crate) upstream: Upstream,
    limits: Limits,
    /// FHIR base path without trailing slash (`""` when the API is at the root).
    pub(crate) base_path: String,
    security: Security,
}

impl Pipeline {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, BuildError> {
        Ok(Pipeline {
            upstream: Upstream::new(config)?,
            limits: config.limits.clone(),
            base_path: base_path(&config.public_base_url),
            security: Security::new(config)?,
        })
    }

    /// Handle one request under the FHIR base path. Never fails: errors become
    /// OperationOutcome responses here.
    pub(crate) async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let client_addr = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        let request_id = request.headers().get(X_REQUEST_ID).cloned();
        let mut ctx = RequestCtx::new(client_addr, request_id);
        match self.run(&mut ctx, request).await {
            Ok(response) => response,
            Err(err) => {
                log_error(&ctx, &err);
                err.to_response()
            }
        }
    }

    async fn run(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        // SMART discovery is the gateway's own document, not a FHIR interaction.
        let below_base = request.uri().path().get(self.base_path.len()..).unwrap_or("");
        if let Some(answer) = smart_discovery::serve(&self.security, request.method(), below_base)
        {
            return answer;
        }
        // 1. classify
        let mut classified = classify::classify(
            ctx,
            request,
            self.base_path.len(),
            self.limits.max_form_body_size,
        )
        .await?;
        authorize::strip_client_context(&mut classified.parts.headers);
        // 2. authenticate
        authenticate::authenticate(&self.security, ctx, &mut classified.parts).await?;
        // 3. authorize
        let plan = authorize::authorize(
            &self.security,
            &self.upstream,
            ctx,
            &mut classified,
            self.limits.max_body_size,
        )
        .await?;
        let capabilities = ctx
            .fhir
            .as_ref()
            .is_some_and(|f| f.interaction == Interaction::Capabilities && f.method == Method::GET);
        if capabilities {
            smart_discovery::prepare_request(&self.security, &mut classified.parts.headers);
        }
        // 4. throttle, 5. cache: not built yet.
        // 6. forward
        let response = forward::forward(
            &self.upstream,
            ctx,
            classified,
            self.limits.max_body_size,
            self.limits.bundle_rewrite_max,
        )
        .await?;
        // 7. verify
        let response = verify::verify(&self.security, ctx, plan, response).await?;
        let response = if capabilities {
            smart_discovery::amend_metadata(&self.security, response).await?
        } else {
            response
        };
        // 8. audit: not built yet.
        Ok(response)
    }
}

fn log_error(ctx: &RequestCtx, err: &GatewayError) {
    let detail = error_chain(err);
    if err.is_server_side() {
        tracing::warn!(request_id = ctx.request_id_str(), status = %err.status(), error = %detail, "request failed");
    } else {
        tracing::debug!(request_id = ctx.request_id_str(), status = %err.status(), error = %detail, "request rejected");
    }
}
