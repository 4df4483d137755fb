//! Serving a router on a TCP listener with the limits a public listener
//! needs: a client that sends its request head too slowly (or nothing at
//! all, on a new or an idle keep-alive connection) is cut off after
//! [`Limits::header_read`]; a request whose handling, body included, takes
//! longer than [`Limits::request`] is answered 503 and its connection
//! closed; and past [`Limits::connections`] open connections new ones are
//! closed at once, so a slowloris cannot hold every socket; one client
//! address may hold at most [`Limits::per_client`] of them, so a single
//! client cannot take them all either.
//!
//! Each request carries its peer address as
//! `axum::extract::ConnectInfo<SocketAddr>` (per-client rate limits), and,
//! over mutual TLS, the names of the client's verified certificate as
//! [`PeerCertificate`].
//!
//! A [`Listener`] with TLS completes the handshake within
//! [`Limits::header_read`] before any HTTP is read: a client that speaks
//! plain HTTP to it, offers TLS 1.1 or below, or (with a client CA) has no
//! valid certificate never reaches a handler. HTTP/2 is served when the
//! client chose `h2` by ALPN, HTTP/1.1 otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;

use crate::tls::{PeerCertificate, ServerTls, TlsError};

/// A bound TCP listener, with the TLS its connections are accepted with.
pub struct Listener {
    tcp: tokio::net::TcpListener,
    tls: Option<Arc<ServerTls>>,
}

impl From<tokio::net::TcpListener> for Listener {
    fn from(tcp: tokio::net::TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

/// Why a listener could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("couldn't listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Its TLS refused (plain HTTP off loopback).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How a server's listeners speak: TLS with these files, or plain HTTP
/// (refused off loopback unless allowed).
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// The listeners' TLS; none: plain HTTP.
    pub tls: Option<Arc<ServerTls>>,
    /// Plain HTTP may be served on an address other than loopback.
    pub allow_plaintext: bool,
}

impl Transport {
    /// From a server's flags or configuration: a certificate and its key
    /// (both or neither), an optional client CA, and whether plain HTTP may
    /// be served off loopback. The files are loaded; errors name the file.
    pub fn from_paths(
        cert: Option<std::path::PathBuf>,
        key: Option<std::path::PathBuf>,
        client_ca: Option<std::path::PathBuf>,
        allow_plaintext: bool,
    ) -> Result<Self, TlsError> {
        let files = crate::tls::ServerFiles::from_flags(cert, key, client_ca)?;
        Ok(Self {
            tls: files.map(ServerTls::load).transpose()?,
            allow_plaintext,
        })
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(self.tls.is_some())
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

impl Listener {
    /// Bind `addr` for `transport`. Without TLS an address other than
    /// loopback is refused unless the transport allows plain HTTP.
    pub async fn bind(addr: &str, transport: &Transport) -> Result<Self, ListenError> {
        let tls = transport.tls.clone();
        let allow_plaintext = transport.allow_plaintext;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let bound = tcp.local_addr().map_err(|source| ListenError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        crate::tls::check_plaintext(bound, tls.is_some(), allow_plaintext)?;
        Ok(Self { tcp, tls })
    }

    /// Wrap a bound listener with `tls`.
    pub fn with_tls(tcp: tokio::net::TcpListener, tls: Option<Arc<ServerTls>>) -> Self {
        Self { tcp, tls }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    /// Its base URL: `https://ADDR` with TLS, `http://ADDR` without.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("{}://{}", scheme(self.tls.is_some()), self.local_addr()?))
    }
}

/// Limits on one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest wait for a request's head, from connecting or from the end of
    /// the previous response.
    pub header_read: Duration,
    /// Longest handling of one request, reading its body included.
    pub request: Duration,
    /// Most connections open at once.
    pub connections: usize,
    /// Most connections open at once from one client address.
    pub per_client: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            connections: 4096,
            per_client: 256,
            drain: Duration::from_secs(10),
        }
    }
}

/// One connection counted against its client address's cap.
struct ClientSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, cap: usize) -> Option<Self> {
        let mut m = open.lock().ok()?;
        let n = m.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Self {
            open: Arc::clone(open),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.open.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

fn timed_out() -> Response<axum::body::Body> {
    let mut r = Response::new(axum::body::Body::from(
        r#"{"error":{"code":"timeout","message":"the request took too long"}}"#,
    ));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Serve `app` on `listener` until `shutdown` resolves, then let requests in
/// flight finish (for at most [`Limits::drain`]).
pub async fn serve(
    listener: impl Into<Listener>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener { tcp: listener, tls } = listener.into();
    if let Some(t) = &tls {
        t.watch(Duration::from_secs(1));
    }
    let open = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let per_client = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(socket);
            continue;
        };
        let Some(client) = ClientSlot::take(&per_client, peer.ip(), limits.per_client) else {
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.config()));
        tokio::spawn(async move {
            match acceptor {
                None => serve_http1(watcher, socket, service(app, peer, None, limits), limits).await,
                Some(acceptor) => {
                    // The handshake shares the head's deadline: a client that never
                    // finishes it holds its slot no longer than one that never sends a head.
                    let Ok(Ok(stream)) = tokio::time::timeout(limits.header_read, acceptor.accept(socket)).await else {
                        drop((client, permit));
                        return;
                    };
                    let (_, session) = stream.get_ref();
                    let cert = session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|leaf| PeerCertificate::of(leaf));
                    let h2 = session.alpn_protocol() == Some(b"h2");
                    let svc = service(app, peer, cert, limits);
                    if h2 {
                        let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .timer(TokioTimer::new())
                            .max_concurrent_streams(H2_STREAMS)
                            .serve_connection(TokioIo::new(stream), svc);
                        let _ = watcher.watch(conn).await;
                    } else {
                        serve_http1(watcher, stream, svc, limits).await;
                    }
                }
            }
            drop((client, permit));
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain, graceful.shutdown()).await;
    Ok(())
}

/// Streams one HTTP/2 connection may carry at once: the per-connection
/// share a single client gets, as [`Limits::per_client`] bounds its connections.
const H2_STREAMS: u32 = 128;

async fn serve_http1<S>(
    watcher: hyper_util::server::graceful::Watcher,
    io: S,
    svc: impl hyper::service::Service<
            Request<Incoming>,
            Response = Response<axum::body::Body>,
            Error = std::convert::Infallible,
            Future = impl Future<Output = Result<Response<axum::body::Body>, std::convert::Infallible>> + Send,
        > + Send
        + 'static,
    limits: Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(TokioIo::new(io), svc);
    let _ = watcher.watch(conn).await;
}

/// One connection's service: the request gets its peer's address (and
/// certificate) and is bounded by [`Limits::request`].
fn service(
    app: Router,
    peer: std::net::SocketAddr,
    cert: Option<PeerCertificate>,
    limits: Limits,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<axum::body::Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<axum::body::Body>, std::convert::Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let app = app.clone();
        let cert = cert.clone();
        async move {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(c) = cert {
                req.extensions_mut().insert(c);
            }
            let r = match tokio::time::timeout(limits.request, app.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(),
            };
            Ok::<_, std::convert::Infallible>(r)
        }
    })
}
