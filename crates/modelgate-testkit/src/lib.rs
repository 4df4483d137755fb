//! Test support: a deterministic OpenAI-compatible inference server (the
//! "mock upstream") for tests and benchmarks. It is not part of the product
//! binary; the `modelgate-mock-upstream` binary serves it on a port.
//!
//! Chat and text completions echo the last message (`echo: …`), or stream
//! `chunks` events `delay` apart when `stream` is true, each with a usage in
//! the last event; embeddings are derived from SHA-256 of each input. Every
//! answer says whether it saw a `traceparent` and an `Authorization` header
//! (`x-seen-traceparent`, `x-seen-authorization`), so tests can check what
//! the gateway forwards.
//!
//! [`postgres`]: the PostgreSQL server of the tests and benchmarks;
//! [`softhsm`]: a SoftHSM2 token of a test's own.

pub mod postgres;
pub mod softhsm;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body::Frame;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The router of a mock upstream.
pub fn mock_router(m: Mock) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(mock_complete))
        .route("/v1/completions", post(mock_complete))
        .route("/v1/embeddings", post(mock_embeddings))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"object": "list", "data": [{"id": "mock", "object": "model"}]})) }),
        )
        .with_state(m)
}

/// How a mock upstream streams.
#[derive(Clone, Debug)]
pub struct Mock {
    /// Events in a streamed answer.
    pub chunks: u32,
    /// Pause between streamed events.
    pub delay: Duration,
}

fn last_text(v: &Value) -> String {
    if let Some(msgs) = v["messages"].as_array() {
        return msgs
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
    }
    match &v["prompt"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn mock_complete(State(m): State<Mock>, headers: HeaderMap, uri: Uri, Json(v): Json<Value>) -> Response {
    let model = v["model"].as_str().unwrap_or("mock").to_owned();
    let text = last_text(&v);
    let prompt_tokens = text.split_whitespace().count() as u64;
    let chat = uri.path().ends_with("/chat/completions");
    let seen = headers
        .get("traceparent")
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let auth_seen = if headers.contains_key(header::AUTHORIZATION) {
        "yes"
    } else {
        "no"
    };
    if v["stream"] == json!(true) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (chunks, delay) = (m.chunks, m.delay);
        tokio::spawn(async move {
            for i in 0..chunks {
                let piece = format!("tok{i} ");
                let ev = if chat {
                    json!({"id": "mock", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
                } else {
                    json!({"id": "mock", "object": "text_completion", "model": model,
                           "choices": [{"index": 0, "text": piece, "finish_reason": null}]})
                };
                if tx.send(Bytes::from(format!("data: {ev}\n\n"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
            let last = json!({"id": "mock", "object": "chat.completion.chunk", "model": model, "choices": [],
                              "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": chunks,
                                        "total_tokens": prompt_tokens + u64::from(chunks)}});
            let _ = tx.send(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))).await;
        });
        return (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (HeaderName::from_static("x-seen-traceparent"), seen),
                (
                    HeaderName::from_static("x-seen-authorization"),
                    HeaderValue::from_static(auth_seen),
                ),
            ],
            Body::new(ChannelBody(rx)),
        )
            .into_response();
    }
    let answer = format!("echo: {text}");
    let body = if chat {
        json!({"id": "mock", "object": "chat.completion", "created": 0, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}})
    } else {
        json!({"id": "mock", "object": "text_completion", "created": 0, "model": model,
               "choices": [{"index": 0, "text": answer, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}})
    };
    (
        [
            (HeaderName::from_static("x-seen-traceparent"), seen),
            (
                HeaderName::from_static("x-seen-authorization"),
                HeaderValue::from_static(auth_seen),
            ),
        ],
        Json(body),
    )
        .into_response()
}

/// A channel of chunks as a response body (frames as they are sent).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

async fn mock_embeddings(Json(v): Json<Value>) -> Response {
    let inputs: Vec<String> = match &v["input"] {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or_default().to_owned()).collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let h = Sha256::digest(s.as_bytes());
            let emb: Vec<f64> = h.iter().take(8).map(|b| f64::from(*b) / 255.0).collect();
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    Json(json!({"object": "list", "data": data, "model": v["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

async fn serve_tls(listener: tokio::net::TcpListener, tls: tokio_rustls::TlsAcceptor, app: Router) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(socket).await else { return };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A mock upstream serving on a loopback port from a thread of its own;
/// it stops (listener closed, connections cut) on [`MockServer::stop`] or drop.
pub struct MockServer {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    /// Start one on `127.0.0.1`, on a free port.
    pub fn start(m: Mock) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", m)
    }

    /// Start one on `addr` (a documented walkthrough's fixed port).
    pub fn start_on(addr: &str, m: Mock) -> std::io::Result<Self> {
        Self::start_with(addr, m, None)
    }

    /// Start one on `127.0.0.1` speaking HTTPS with this certificate chain
    /// and key (PEM): an `https://` upstream.
    pub fn start_tls(m: Mock, cert: &std::path::Path, key: &std::path::Path) -> std::io::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&e))?;
        let config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(&e))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| bad(&e))?;
        Self::start_with(
            "127.0.0.1:0",
            m,
            Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))),
        )
    }

    fn start_with(addr: &str, m: Mock, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-upstream".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tls {
                        None => tokio::select! {
                            _ = axum::serve(listener, mock_router(m)) => {}
                            _ = stopped => {}
                        },
                        Some(tls) => tokio::select! {
                            () = serve_tls(listener, tls, mock_router(m)) => {}
                            _ = stopped => {}
                        },
                    }
                });
                // Dropping the runtime here cancels every connection's task.
            })?;
        Ok(Self {
            url,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop serving: new connections are refused, open ones are cut.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}
