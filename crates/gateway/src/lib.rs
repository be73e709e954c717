//! The FHIR-aware reverse proxy (DESIGN.md §3).
//!
//! Every request reaching fhirgate's listener passes through here first: the transport layers
//! (request id, tracing, limits, load shedding, catch-panic) wrap a small router that sends
//! `/healthz` and `/readyz` to built-in handlers, mounted services (the embedded authorization
//! server, the app) to themselves, and everything under the FHIR base path to the pipeline.
//! The pipeline runs the named phases in order — classify, [authenticate], [authorize],
//! [throttle], [cache], forward, [verify], [audit] — sharing one [`RequestCtx`], and every
//! failure becomes an OperationOutcome through [`GatewayError::to_response`].

mod admin;
mod audit;
mod authenticate;
mod authorize;
mod cache;
mod classify;
mod completion;
pub mod config;
mod connection;
mod cors;
mod ctx;
mod error;
mod forward;
mod keepalive;
mod layers;
mod log_context;
mod metrics;
mod pipeline;
mod reload;
mod revocation;
mod router;
mod security;
pub mod security_config;
mod server;
mod smart_discovery;
mod throttle;
mod tracing_spans;
mod upstream;
mod verify;

pub use cache::{CacheConfig, CacheInteraction, CacheRule};
pub use config::{
    Balance, GatewayConfig, HealthConfig, Limits, RetryConfig, ShutdownConfig, UpstreamConfig,
};
pub use cors::CorsConfig;
pub use ctx::{RequestCtx, Timings};
pub use error::{BoxError, GatewayError};
pub use log_context::{RequestTag, with_current_request};
pub use metrics::MetricsConfig;
pub use reload::{ReloadError, ReloadRequest, ReloadSummary, Reloader};
pub use revocation::{RevocationConfig, RevocationConfigError};
pub use router::MountedService;
pub use security_config::{AuthConfig, AuthMode, AuthorizationConfig};
pub use server::Gateway;
pub use tracing_spans::{OtlpProtocol, TARGET as OTEL_TARGET, TracingConfig};
pub use upstream::BuildError;
