//! OpenTelemetry traces over OTLP/HTTP (JSON encoding), one span per
//! inference call, with the GenAI semantic-convention attributes. The
//! attribute names are pinned here as our own constants: the conventions
//! are still marked experimental upstream, and a renamed attribute must be a
//! visible change in this file, not a side effect of a dependency update.
//!
//! Export runs on the SDK's batch thread, through the same blocking HTTP
//! client the node already uses for the authority, and only to the endpoint
//! the operator configured (`otlp_endpoint`); without one, nothing is sent.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

/// GenAI and HTTP semantic-convention attribute names (pinned).
pub(crate) mod semconv {
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const ERROR_TYPE: &str = "error.type";
    pub const MODELGATE_LINEAGE_ID: &str = "modelgate.lineage.id";
    pub const MODELGATE_MODEL_DIGEST: &str = "modelgate.model.digest";
    pub const MODELGATE_SCOPE: &str = "modelgate.scope";
    pub const MODELGATE_PRINCIPAL: &str = "modelgate.principal";
    pub const MODELGATE_APPROVAL: &str = "modelgate.approval";
    pub const MODELGATE_OUTCOME: &str = "modelgate.outcome";
    pub const MODELGATE_CHECK: &str = "modelgate.check";
}

/// OTLP/HTTP over ureq (blocking, on the exporter's own thread).
#[derive(Debug)]
struct Ureq(ureq::Agent);

#[async_trait::async_trait]
impl HttpClient for Ureq {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self.0.post(parts.uri.to_string());
        for (k, v) in &parts.headers {
            req = req.header(k.as_str(), v.to_str().unwrap_or_default());
        }
        let mut r = req.send(&body[..])?;
        let status = r.status();
        let bytes = r.body_mut().with_config().limit(1 << 20).read_to_vec()?;
        Ok(Response::builder().status(status).body(Bytes::from(bytes))?)
    }
}

/// The node's tracer (a no-op when no endpoint is configured).
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
}

/// One call's span, ended when the call's completion is recorded.
pub(crate) struct CallSpan(Option<opentelemetry_sdk::trace::Span>);

impl Telemetry {
    /// Export to `endpoint` (the full traces URL, e.g.
    /// `http://collector:4318/v1/traces`), or nowhere.
    pub(crate) fn new(endpoint: Option<&str>, service: &str, node: &str) -> Result<Self, String> {
        let Some(endpoint) = endpoint else {
            return Ok(Self {
                provider: None,
                tracer: None,
            });
        };
        let agent = modelgate_http::agent(modelgate_http::Timeouts::TELEMETRY);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Ureq(agent))
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.instance.id", node.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("modelgate");
        Ok(Self {
            provider: Some(provider),
            tracer: Some(tracer),
        })
    }

    /// Start a call's span as the child of the caller's trace context, with
    /// the span id we propagate upstream.
    pub(crate) fn start(
        &self,
        trace: &str,
        parent: Option<&str>,
        span: &str,
        operation: &'static str,
        model: &str,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> CallSpan {
        // Built only when traces are exported: they cost allocations per call.
        let Some(tracer) = &self.tracer else {
            return CallSpan(None);
        };
        let trace_id = TraceId::from_hex(trace).unwrap_or(TraceId::INVALID);
        let span_id = SpanId::from_hex(span).unwrap_or(SpanId::INVALID);
        let cx = match parent.and_then(|p| SpanId::from_hex(p).ok()) {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let mut attrs = vec![
            KeyValue::new(semconv::GEN_AI_OPERATION_NAME, operation),
            KeyValue::new(semconv::GEN_AI_PROVIDER_NAME, "openai"),
            KeyValue::new(semconv::GEN_AI_REQUEST_MODEL, model.to_owned()),
        ];
        attrs.extend(attributes());
        let mut b = tracer
            .span_builder(format!("{operation} {model}"))
            .with_kind(SpanKind::Client)
            .with_span_id(span_id)
            .with_start_time(SystemTime::now())
            .with_attributes(attrs);
        if parent.is_none() {
            b = b.with_trace_id(trace_id);
        }
        CallSpan(Some(b.start_with_context(tracer, &cx)))
    }

    /// Flush what is queued (on shutdown).
    pub(crate) fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.shutdown();
        }
    }
}

impl CallSpan {
    /// End the span with these attributes; `error` marks it failed.
    pub(crate) fn end(mut self, attributes: Vec<KeyValue>, error: Option<String>) {
        if let Some(mut s) = self.0.take() {
            s.set_attributes(attributes);
            if let Some(e) = error {
                s.set_attribute(KeyValue::new(semconv::ERROR_TYPE, e.clone()));
                s.set_status(Status::error(e));
            }
            s.end();
        }
    }
}
