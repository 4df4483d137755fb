//! What every modelgate server and client shares, and nothing else: the
//! hardened listener ([`listen`]), the one path by which a request body is
//! read ([`body`]), the one way a client is made, with named timeouts
//! ([`client`]), token buckets ([`rate`]), the Prometheus text writer
//! ([`prometheus`]), route tables ([`routes`]) and TLS for both sides
//! ([`tls`]). A leaf crate: it knows no store, no log and no governance, so
//! the node's runtime can use it without the authority's storage.
//!
//! Guarantees: a connection that sends its head too slowly, a request that
//! takes too long, more connections than the listener's cap or one client's
//! share of it are cut off; a body is never read before its handler decided
//! on the request's head, and bodies in flight never hold more memory than
//! their class's budget.

pub mod body;
pub mod client;
pub mod listen;
pub mod prometheus;
pub mod rate;
pub mod routes;
pub mod tls;

pub use body::{BodyError, BodyLimits, Budget, Held};
pub use client::{agent, agent_with, Timeouts};
pub use listen::{serve, Limits, ListenError, Listener, Transport};

/// Resolves at SIGINT or SIGTERM: what stops every modelgate server
/// gracefully (in-flight requests finish). Where the handlers cannot be
/// installed it never resolves, and the process stops as signals' default.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// A multi-threaded runtime for a server whose blocking work (store reads,
/// fsyncs, proofs) runs on at most `blocking` threads: a bounded pool
/// bounds memory under load.
pub fn server_runtime(blocking: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
}

/// The client address a request came from, as the listener records it
/// (`0.0.0.0` for a request that did not come through [`listen::serve`],
/// such as one in a test driven in-process).
pub fn client_of(req: &axum::http::Extensions) -> std::net::IpAddr {
    req.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}
