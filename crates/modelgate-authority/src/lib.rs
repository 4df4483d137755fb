//! The authority: modelgate's control plane. It sequences the governance log
//! and serves it so that nodes, auditors and browsers verify rather than
//! trust.
//!
//! What it guarantees:
//!
//! - **It never logs what the fold would refuse.** Every submission is
//!   checked with exactly the governance fold's rules against the state that
//!   includes every earlier accepted submission, by the one thread that
//!   appends ([`service`]).
//! - **An acknowledgement means durable.** A submitter gets its index and a
//!   signed checkpoint only after the batch is fsynced (group commit).
//! - **Standard reads.** The log is served as C2SP tlog-tiles under `/log/`;
//!   the checkpoint carries the authority's tlog-cosignature/v1, refreshed
//!   at least every second, so a node can tell a fresh view from a replay.
//! - **One sequencer.** A second authority on the same data directory is
//!   refused by the store's writer lock.
//! - **Refusals name the problem.** Every error is JSON with a stable code
//!   and a message; nothing is appended on any error. A store that cannot
//!   write (full or read-only disk) answers 503 with Retry-After, and writes
//!   resume when it can.
//! - **No replay, no cross-site writes, no starving.** Node-signed entries
//!   only move forward (the fold refuses a repeated report sequence or
//!   anchor), writes need a JSON content type and no foreign `Origin`, and
//!   the writes that need no token are rate-limited per client ([`limit`]).
//! - **Reads never wait for the disk.** Each durable batch is swapped into
//!   the published state after its fsync; no lock is held across a write,
//!   `/readyz` reports a stalled or failing writer, and every listener cuts
//!   off slow clients and reads a body only after its head is decided ([`modelgate_http`]).
//! - **Restarts are short.** A signed snapshot of the folded state is kept
//!   beside the log ([`snapshot`]); a restart refolds only what follows it.

mod api_error;
pub mod audit;
pub mod client;
pub mod data;
mod error;
pub mod http;
pub mod lineage;
pub mod pending;
pub mod proof;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod tokens;
pub mod witness;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use api_error::ApiError;
pub use data::{init, init_at, init_keys, init_with, DataDir, InitReport, RootKeys, TokenKeys};
pub use error::AuthorityError;
pub use http::router;
pub use service::Authority;
pub use tokens::TokenRole;

/// How often the served checkpoint's cosignature is renewed.
pub const COSIGN_INTERVAL: Duration = Duration::from_millis(500);

/// Serve `authority` on `listener` until `shutdown` resolves; then stop
/// taking requests, let in-flight ones finish, drain the writer and close
/// the store. No acknowledged write is lost: acknowledgements only follow
/// durable appends.
pub async fn serve(
    authority: Arc<Authority>,
    listener: impl Into<modelgate_http::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AuthorityError> {
    serve_with(authority, listener, None, shutdown).await
}

/// [`serve`], with `extra` routes (the console) beside the API on the same
/// listener; they must not overlap the API's.
pub async fn serve_with(
    authority: Arc<Authority>,
    listener: impl Into<modelgate_http::Listener>,
    extra: Option<axum::Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AuthorityError> {
    let refresher = {
        let a = Arc::clone(&authority);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COSIGN_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = a.refresh_checkpoint() {
                    tracing::error!(error = %e, "refreshing the checkpoint cosignature");
                }
            }
        })
    };
    let app = match extra {
        Some(extra) => router(Arc::clone(&authority)).merge(extra),
        None => router(Arc::clone(&authority)),
    };
    let result = modelgate_http::serve(listener, app, modelgate_http::Limits::default(), shutdown)
        .await
        .map_err(|e| AuthorityError::io(format!("serving: {e}")));
    refresher.abort();
    let a = Arc::clone(&authority);
    tokio::task::spawn_blocking(move || a.shutdown())
        .await
        .map_err(|e| AuthorityError::io(format!("shutting down: {e}")))?;
    result
}
