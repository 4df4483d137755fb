//! Every route of the gateway, declared once with who may call it. The
//! router is built from [`ROUTES`] alone (a route that is not there is
//! unreachable) and [`guard`] enforces each route's access on the request's
//! head before its handler runs, except for the governed calls: their
//! refusal is a governance decision, recorded in the lineage log by the call
//! path itself ([`Access::Caller`]). The README's table of node endpoints is
//! this table ([`markdown`]; a test holds them equal).

use super::*;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A configured caller, in one of its scopes; a refusal is recorded.
    Caller,
    /// A configured caller: the record must be of its own call, or the
    /// caller reads all (`lineage = "all"`).
    LineageReader,
    /// As `status_access` says: anyone, a caller with `monitor = true`, or no one.
    Status,
    /// As `metrics_access` says.
    Metrics,
}

impl Access {
    /// As the README's table says it.
    pub fn describe(self) -> &'static str {
        match self {
            Access::Public => "anyone",
            Access::Caller => "a configured caller, in its scopes (every refusal is recorded)",
            Access::LineageReader => "the caller whose call it records, or a caller with `lineage = \"all\"`",
            Access::Status => {
                "`status_access`: anyone (default), a caller with `monitor = true` (`\"token\"`), or no one (`\"off\"`)"
            }
            Access::Metrics => "`metrics_access`, as `status_access`",
        }
    }
}

/// What answers a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Models,
    Lineage,
    Status,
    Metrics,
    Healthz,
    Readyz,
    PeerCheckpoint,
    PeerConsistency,
}

/// One route of the table.
pub type Route = modelgate_http::routes::Route<Access, Endpoint>;

const fn r(method: &'static str, path: &'static str, access: Access, endpoint: Endpoint) -> Route {
    Route::new(method, path, access, endpoint)
}

use Endpoint as E;

/// Every route of the gateway.
pub const ROUTES: &[Route] = &[
    r("POST", "/v1/chat/completions", Access::Caller, E::Chat),
    r("POST", "/v1/completions", Access::Caller, E::Completions),
    r("POST", "/v1/embeddings", Access::Caller, E::Embeddings),
    r("GET", "/v1/models", Access::Public, E::Models),
    r("GET", "/lineage/{id}", Access::LineageReader, E::Lineage),
    r("GET", "/status", Access::Status, E::Status),
    r("GET", "/metrics", Access::Metrics, E::Metrics),
    r("GET", "/healthz", Access::Public, E::Healthz),
    r("GET", "/readyz", Access::Public, E::Readyz),
    r("GET", "/peer/checkpoint", Access::Public, E::PeerCheckpoint),
    r("GET", "/peer/consistency", Access::Public, E::PeerConsistency),
];

/// The handler of an endpoint (one exhaustive match).
pub(super) fn handler(e: Endpoint) -> axum::routing::MethodRouter<Gw> {
    match e {
        E::Chat => post(|s, r| proxy(s, r, "chat")),
        E::Completions => post(|s, r| proxy(s, r, "text_completion")),
        E::Embeddings => post(|s, r| proxy(s, r, "embeddings")),
        E::Models => get(models),
        E::Lineage => get(lineage),
        E::Status => get(status),
        E::Metrics => get(metrics),
        E::Healthz => get(|| async { "ok\n" }),
        E::Readyz => get(readyz),
        E::PeerCheckpoint => get(peer_checkpoint),
        E::PeerConsistency => get(peer_consistency),
    }
}

/// Enforce a route's access on the request's head.
pub(super) async fn guard(
    State((gw, access)): State<(Gw, Access)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let verdict = match access {
        Access::Public | Access::Caller => Ok(()),
        Access::LineageReader => gw
            .caller(req.headers(), req.extensions())
            .map(|_| ())
            .ok_or(Refusal::InvalidApiKey),
        Access::Status => gw.may_read(
            req.headers(),
            req.extensions(),
            gw.shared.config.status_access,
            "/status",
        ),
        Access::Metrics => gw.may_read(
            req.headers(),
            req.extensions(),
            gw.shared.config.metrics_access,
            "/metrics",
        ),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(r) => r.into_response(),
    }
}

/// The table as the README shows it.
pub fn markdown() -> String {
    modelgate_http::routes::markdown(ROUTES, "endpoint", Access::describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_node_endpoint_with_its_access() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let start = "<!-- node routes: generated from modelgate_runtime::gateway::routes::ROUTES -->\n";
        let from = readme.find(start).expect("the README's node routes marker") + start.len();
        let to = from + readme[from..].find("<!-- /node routes -->").unwrap();
        assert_eq!(
            &readme[from..to],
            markdown(),
            "the README's node routes; the table should be:\n{}",
            markdown()
        );
    }
}
