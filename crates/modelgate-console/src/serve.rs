//! Serving an authority with its console: the API on its listener, and the
//! console at its prefix on the same listener or on one of its own, until
//! the shutdown future resolves (requests in flight finish, the writer
//! drains).

use std::net::SocketAddr;
use std::sync::Arc;

use modelgate_authority::Authority;

/// Where the console is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Not at all.
    None,
    /// On the API's listener, at the prefix.
    OnApi,
    /// On a listener of its own.
    Own(SocketAddr),
}

impl Placement {
    /// From the command line: `--no-console`, or `--console-listen ADDR`,
    /// else on the API's listener.
    pub fn from_flags(no_console: bool, own: Option<SocketAddr>) -> Self {
        match (no_console, own) {
            (true, _) => Placement::None,
            (false, None) => Placement::OnApi,
            (false, Some(at)) => Placement::Own(at),
        }
    }
}

/// A console path prefix as given (`/governance`, or empty for the root),
/// without its trailing slashes; `None` when it is not a plain path.
pub fn console_prefix(given: &str) -> Option<String> {
    let prefix = given.trim_end_matches('/').to_owned();
    let plain = prefix.is_empty() || (prefix.starts_with('/') && !prefix.contains(['?', '#', ' ']));
    plain.then_some(prefix)
}

/// What is announced as the listeners come up.
#[derive(Clone, Copy, Debug)]
pub enum Announced<'a> {
    /// The API listens at this URL: announced once every listener is bound,
    /// before the first request is served.
    Api(&'a str),
    /// The console is at this URL.
    Console(&'a str),
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound, or would speak plain HTTP off loopback.
    #[error("{what}{source}")]
    Listen {
        /// Which listener (empty for the API's).
        what: &'static str,
        /// Why.
        source: modelgate_http::ListenError,
    },
    /// The announcement was refused by the caller.
    #[error("{0}")]
    Announce(String),
    /// The authority stopped with an error.
    #[error("serving: {0}")]
    Serve(String),
}

/// Serve `authority` on `listen` with its console placed as `placement`
/// under `prefix` until `shutdown` resolves; every listener speaks `transport`.
pub async fn authority_with_console(
    authority: Arc<Authority>,
    listen: SocketAddr,
    transport: &modelgate_http::Transport,
    placement: Placement,
    prefix: &str,
    mut announce: impl FnMut(Announced<'_>) -> Result<(), String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = modelgate_http::Listener::bind(&listen.to_string(), transport)
        .await
        .map_err(|source| ServeError::Listen { what: "", source })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Serve(e.to_string()))?;
    let scheme = transport.scheme();
    let size = authority.served.read().map_or(0, |s| s.size);
    tracing::info!(%addr, size, "authority serving");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut on_api = None;
    let mut own = None;
    if placement != Placement::None {
        let c = crate::Console::new(Arc::clone(&authority), prefix);
        crate::spawn_refresher(&c);
        let routes = crate::router(c);
        let routes = if prefix.is_empty() {
            routes
        } else {
            axum::Router::new().nest(prefix, routes)
        };
        match placement {
            Placement::OnApi | Placement::None => {
                on_api = Some(routes);
                tracing::info!(url = %format!("{scheme}://{addr}{prefix}/"), "console");
            }
            Placement::Own(at) => {
                let l = modelgate_http::Listener::bind(&at.to_string(), transport)
                    .await
                    .map_err(|source| ServeError::Listen {
                        what: "the console: ",
                        source,
                    })?;
                let caddr = l.local_addr().map_err(|e| ServeError::Serve(e.to_string()))?;
                let url = format!("{scheme}://{caddr}{prefix}/");
                tracing::info!(%url, "console on its own listener");
                announce(Announced::Console(&url)).map_err(ServeError::Announce)?;
                let mut rx = stopped.clone();
                own = Some(tokio::spawn(modelgate_http::serve(
                    l,
                    routes,
                    modelgate_http::Limits::default(),
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                )));
            }
        }
    }
    // Last, once every listener is bound (scripts read it to start).
    announce(Announced::Api(&format!("{scheme}://{addr}"))).map_err(ServeError::Announce)?;
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests, draining the writer");
        let _ = stop.send(true);
    };
    modelgate_authority::serve_with(authority, listener, on_api, shutdown)
        .await
        .map_err(|e| ServeError::Serve(e.to_string()))?;
    if let Some(h) = own {
        let _ = h.await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
