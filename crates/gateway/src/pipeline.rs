//! The gateway's own logic: the named phases of DESIGN.md §3, run in order for every FHIR
//! request. Each phase is one module; they share one [`RequestCtx`].
//!
//! Optional phases (throttle, cache) are skipped when not configured. Audit and metrics run
//! when the response completes ([`crate::completion`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use fhirgate_fhir::Interaction;
use http::{Method, Request, Response};
use tracing::Instrument;

use crate::audit::{Audit, RequestFacts};
use crate::cache::{Cache, Lookup};
use crate::completion::Completion;
use crate::config::{GatewayConfig, Limits, base_path, base_string};
use crate::cors::CorsConfig;
use crate::ctx::{Peer, RequestCtx};
use crate::error::{GatewayError, error_chain};
use crate::metrics::Metrics;
use crate::reload::Reused;
use crate::security::Security;
use crate::throttle::Throttle;
use crate::tracing_spans::{self, phase_span};
use crate::upstream::{BuildError, Upstream};
use crate::{
    audit, authenticate, authorize, classify, completion, forward, smart_discovery, throttle,
    verify,
};

/// Awaits one phase's future: inside the span `$span` makes (made first, so that it may
/// look at what the future takes) when `$traced`, bare otherwise.
macro_rules! phase {
    ($traced:expr, $span:expr, $future:expr) => {
        if $traced {
            let span = $span;
            $future.instrument(span).await
        } else {
            $future.await
        }
    };
}

pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

pub(crate) struct Pipeline {
    /// `Arc`s (here and below) so that a reload can hand them to the next pipeline.
    pub(crate) upstream: Arc<Upstream>,
    limits: Limits,
    /// FHIR base path without trailing slash (`""` when the API is at the root).
    pub(crate) base_path: String,
    pub(crate) security: Security,
    pub(crate) throttle: Option<Arc<Throttle>>,
    pub(crate) audit: Option<Audit>,
    pub(crate) metrics: Option<Arc<Metrics>>,
    cors: CorsConfig,
    /// Phase 5; rebuilt (empty) by a reload, whose authorization settings may differ.
    pub(crate) cache: Option<Cache>,
}

impl Pipeline {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, BuildError> {
        Self::build(config, Reused::default())
    }

    /// A pipeline for `config`, taking the parts in `reused` from the running one (reload)
    /// instead of building them.
    pub(crate) fn build(config: &GatewayConfig, reused: Reused) -> Result<Self, BuildError> {
        let upstream = match reused.upstream {
            Some(upstream) => upstream,
            None => Arc::new(Upstream::new(config)?),
        };
        let mut security = Security::new(config)?;
        if let Some(verifier) = reused.verifier {
            security.verifier = verifier;
        }
        let audit = match reused.audit {
            Some(audit) => audit,
            None => Audit::new(
                config.audit.as_ref(),
                std::iter::once(&config.public_base_url)
                    .chain(config.upstream.target_urls())
                    .map(base_string)
                    .collect(),
            )?,
        };
        Ok(Pipeline {
            upstream,
            limits: config.limits.clone(),
            base_path: base_path(&config.public_base_url),
            security,
            throttle: reused
                .throttle
                .unwrap_or_else(|| Throttle::new(config.rate_limit.as_ref()).map(Arc::new)),
            audit,
            metrics: reused
                .metrics
                .unwrap_or_else(|| Metrics::new(&config.metrics).map(Arc::new)),
            cors: config.cors.clone(),
            cache: Cache::new(config.cache.as_ref()),
        })
    }

    /// Handle one request under the FHIR base path. Never fails: errors become
    /// OperationOutcome responses here.
    pub(crate) async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let origin = request.headers().get(http::header::ORIGIN).cloned();
        // Only a cross-origin request (one with `Origin`) is looked at by CORS, which needs
        // its path below the base; the others do not pay for the copy.
        let below_base = match origin {
            Some(_) => request
                .uri()
                .path()
                .get(self.base_path.len()..)
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        };
        // A preflight carries no token and is not a FHIR interaction: answered before classify.
        if let Some(answer) = self.cors.preflight(&request, &below_base) {
            return answer;
        }
        let peer = request.extensions().get::<Peer>();
        let client_addr = peer.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.addr);
        let client_ip_text = peer.and_then(|p| p.ip_text.clone());
        let request_id = request.headers().get(X_REQUEST_ID).cloned();
        let mut ctx = RequestCtx::new(client_addr, request_id);
        ctx.client_ip_text = client_ip_text;
        let discovery =
            request.uri().path().get(self.base_path.len()..) == Some(smart_discovery::WELL_KNOWN);
        // What audit and metrics record of the request; nothing to keep without them.
        let completes = !discovery && (self.metrics.is_some() || self.audit.is_some());
        let recorded = completes.then(|| {
            (
                request.method().to_string(),
                audit::audit_query(request.uri().query()),
            )
        });
        // OpenTelemetry export only (disabled spans otherwise); see `tracing_spans`.
        let span = tracing_spans::request_span(request.method(), request.headers());
        // Without an exporter every span is disabled: the phases are then awaited bare,
        // sparing a copy of each phase's future into a span wrapper (about 2 000
        // instructions per request, callgrind).
        let result = if span.is_disabled() {
            self.run::<false>(&mut ctx, request).await
        } else {
            self.run::<true>(&mut ctx, request)
                .instrument(span.clone())
                .await
        };
        let (mut response, failure) = match result {
            Ok(response) => (response, None),
            Err(err) => {
                log_error(&ctx, &err);
                if let Some(metrics) = &self.metrics {
                    metrics.observe_error(&err);
                }
                let failure = (err.issue_type().as_str(), err.to_string());
                (err.to_response(), Some(failure))
            }
        };
        self.cors
            .decorate(origin.as_ref(), &below_base, &mut response);
        tracing_spans::record_status(&span, response.status().as_u16());
        // 8. audit and metrics, when the response completes. Discovery is not a FHIR request.
        let Some((method, query)) = recorded else {
            return response;
        };
        let facts = RequestFacts {
            method,
            query,
            status: response.status().as_u16(),
            failure,
        };
        let completion = Completion {
            ctx,
            facts,
            metrics: self.metrics.clone(),
            audit: self.audit.clone(),
        };
        if span.is_disabled() {
            return completion::complete(completion, response).await;
        }
        let audit_span = span.in_scope(|| phase_span!("audit"));
        completion::complete(completion, response)
            .instrument(audit_span)
            .await
    }

    /// The phases; with `TRACED` each runs inside its span (see `phase!`).
    async fn run<const TRACED: bool>(
        &self,
        ctx: &mut RequestCtx,
        request: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        // SMART discovery is the gateway's own document, not a FHIR interaction.
        let below_base = request
            .uri()
            .path()
            .get(self.base_path.len()..)
            .unwrap_or("");
        if let Some(answer) = smart_discovery::serve(&self.security, request.method(), below_base) {
            return answer;
        }
        // 1. classify
        let mut classified = phase!(
            TRACED,
            phase_span!("classify"),
            classify::classify(
                ctx,
                request,
                self.base_path.len(),
                self.limits.max_form_body_size,
            )
        )?;
        authorize::strip_client_context(&mut classified.parts.headers);
        // 2. authenticate
        phase!(
            TRACED,
            phase_span!("authenticate"),
            authenticate::authenticate(&self.security, ctx, &mut classified.parts)
        )?;
        // 3. authorize
        let plan = phase!(
            TRACED,
            phase_span!("authorize"),
            authorize::authorize(
                &self.security,
                &self.upstream,
                ctx,
                &mut classified,
                self.limits.max_body_size,
            )
        )?;
        let capabilities = ctx
            .fhir
            .as_ref()
            .is_some_and(|f| f.interaction == Interaction::Capabilities && f.method == Method::GET);
        if capabilities {
            smart_discovery::prepare_request(&self.security, &mut classified.parts.headers);
        }
        // 4. throttle
        let quota = match &self.throttle {
            Some(throttle) => phase!(
                TRACED,
                phase_span!("throttle"),
                throttle.check(ctx, &classified.parts.headers)
            )?,
            None => Vec::new(),
        };
        if let Some(audit) = &self.audit {
            audit.check_writable(ctx)?;
        }
        // 5. cache
        let lookup = match &self.cache {
            Some(cache) => {
                phase_span!("cache").in_scope(|| cache.lookup(ctx, &mut classified, &plan))
            }
            None => Lookup::Bypass,
        };
        if let Lookup::Hit(mut response) = lookup {
            throttle::add_headers(response.headers_mut(), quota);
            return Ok(response);
        }
        let _invalidate = self.cache.as_ref().and_then(|cache| cache.on_write(ctx));
        // 6. forward
        let response = phase!(
            TRACED,
            {
                let span = phase_span!("forward");
                tracing_spans::set_upstream_traceparent(&span, &mut classified.parts.headers);
                span
            },
            forward::forward(
                &self.upstream,
                ctx,
                classified,
                self.limits.max_body_size,
                self.limits.bundle_rewrite_max,
            )
        )?;
        // 7. verify
        let response = phase!(
            TRACED,
            phase_span!("verify"),
            verify::verify(&self.security, ctx, plan, response)
        )?;
        let response = if capabilities {
            smart_discovery::amend_metadata(&self.security, response).await?
        } else {
            response
        };
        let mut response = match &self.cache {
            Some(cache) => cache.complete(ctx, lookup, response).await,
            None => response,
        };
        throttle::add_headers(response.headers_mut(), quota);
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
