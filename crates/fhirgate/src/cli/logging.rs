//! Logging set-up shared by every subcommand, and the optional OpenTelemetry export of the
//! gateway's phase spans (`tracing:` in the config, see docs/tracing.md).
//!
//! The subscriber is installed before the config is read, so the OpenTelemetry layer is
//! always present but starts switched off: its filter admits nothing (and tells `tracing` so,
//! which keeps the gateway's `TRACE` phase spans disabled at their call sites). [`install`]
//! later points the layer at a real exporter and switches the filter on.

use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use fhirgate_gateway::{OTEL_TARGET, OtlpProtocol, TracingConfig};
use opentelemetry::trace::{SpanBuilder, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};
use tracing::Metadata;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::log_lines::{Shape, WithRequest};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Logs go to stderr so that commands printing results (tokens, URLs) keep stdout clean.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("FHIRGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: in a file or a log collector the escape codes are noise,
    // and the layer writes them into every request span's fields as the span is made.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Lines written inside a request name it (method, path, request id).
    let fmt = match format {
        LogFormat::Pretty => fmt
            .map_event_format(|format| WithRequest::new(format, Shape::Terminal))
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .map_event_format(|format| WithRequest::new(format, Shape::Json))
            .boxed(),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(SwitchTracer::default())
        .with_filter(OtelFilter);
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init();
}

/// The exporter's tracer once [`install`] ran; until then spans go nowhere (and none are
/// created, as [`OtelFilter`] is off).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Export spans as `config` says. Call once, inside the Tokio runtime; keep the guard and
/// `shutdown` it when the server stops, so the last spans are sent.
pub fn install(config: &TracingConfig) -> anyhow::Result<OtelGuard> {
    let protocol = match config.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
    };
    let client = ExportClient::new(config.timeout)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(protocol)
        .with_endpoint(config.otlp_endpoint.as_str())
        .with_timeout(config.timeout)
        .build()
        .context("building the OTLP span exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    // Bounded: at most the SDK's queue (2048 spans) waits for export; more are dropped.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    if TRACER.set(provider.tracer("fhirgate")).is_err() {
        anyhow::bail!("OpenTelemetry export is already installed");
    }
    EXPORTING.store(true, Ordering::Release);
    // Call sites cached their "disabled" verdict; ask them again.
    tracing::callsite::rebuild_interest_cache();
    tracing::info!(
        endpoint = %config.otlp_endpoint,
        service = %config.service_name,
        sample_ratio = config.sample_ratio,
        "exporting OpenTelemetry spans"
    );
    Ok(OtelGuard { provider })
}

/// Keeps the exporter; [`OtelGuard::shutdown`] flushes the spans still queued.
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Export what is queued and stop. Blocking work, so it runs off the runtime's threads
    /// (the export itself needs the runtime).
    pub async fn shutdown(self) {
        EXPORTING.store(false, Ordering::Release);
        tracing::callsite::rebuild_interest_cache();
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// Admits the gateway's span target only, and only while exporting.
struct OtelFilter;

impl OtelFilter {
    fn wants(meta: &Metadata<'_>) -> bool {
        EXPORTING.load(Ordering::Acquire) && meta.target() == OTEL_TARGET
    }
}

impl<S> Filter<S> for OtelFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(if EXPORTING.load(Ordering::Acquire) {
            LevelFilter::TRACE
        } else {
            LevelFilter::OFF
        })
    }
}

/// The layer's tracer, fixed when the subscriber is built: delegates to [`TRACER`] once set.
#[derive(Debug)]
struct SwitchTracer {
    /// A provider without processors: spans built before `install` are dropped.
    idle: SdkTracer,
}

impl Default for SwitchTracer {
    fn default() -> Self {
        SwitchTracer {
            idle: SdkTracerProvider::builder().build().tracer("fhirgate"),
        }
    }
}

impl opentelemetry::trace::Tracer for SwitchTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(
        &self,
        builder: SpanBuilder,
        parent_cx: &opentelemetry::Context,
    ) -> Self::Span {
        TRACER
            .get()
            .unwrap_or(&self.idle)
            .build_with_context(builder, parent_cx)
    }
}

/// Largest collector answer read (it is only checked for success).
const MAX_ANSWER: usize = 64 * 1024;

/// The exporter's HTTP client: reqwest with rustls and a timeout, run on the server's Tokio
/// runtime (the SDK's batch thread awaits the result from outside it).
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new(timeout: std::time::Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .context("building the OTLP HTTP client")?;
        let runtime = tokio::runtime::Handle::try_current()
            .context("OpenTelemetry export must be installed inside the runtime")?;
        Ok(ExportClient { client, runtime })
    }
}

type ExportResult = Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for ExportClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<bytes::Bytes>,
    ) -> Pin<Box<dyn Future<Output = ExportResult> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            let answer = http::Response::builder()
                .status(status)
                .body(bytes::Bytes::from(body))?;
            Ok::<_, opentelemetry_http::HttpError>(answer)
        });
        Box::pin(async move { task.await? })
    }
}
