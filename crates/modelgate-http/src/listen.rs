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
//! `axum::extract::ConnectInfo<SocketAddr>` (per-client rate limits).

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
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
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
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let app = app.clone();
            async move {
                req.extensions_mut().insert(ConnectInfo(peer));
                let r = match tokio::time::timeout(limits.request, app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(),
                };
                Ok::<_, std::convert::Infallible>(r)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .serve_connection(TokioIo::new(socket), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop((client, permit));
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain, graceful.shutdown()).await;
    Ok(())
}
