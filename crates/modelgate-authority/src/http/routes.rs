//! Every route of the authority's API, declared once with who may call it.
//! The router is built from [`ROUTES`] alone, so a route that is not in the
//! table is unreachable, and the access each declares is enforced by
//! [`guard`] before its handler runs (handlers check again what only the
//! body tells, such as which role may submit an entry's type). The README's
//! table of routes is this table ([`markdown`]; a test holds them equal).

use super::*;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: a read of public data.
    Public,
    /// A bearer token the authority issued; the handler checks its role
    /// against what is submitted.
    Token,
    /// A node, by its enrolled key's signature over what it sends, with no
    /// token: rate-limited per client address, its body read within the
    /// strangers' budget.
    NodeSigned,
    /// A known token, or none for the entries a node signs (anchors and
    /// containment reports).
    TokenOrNodeSigned,
}

impl Access {
    /// As the README's table says it.
    pub fn describe(self) -> &'static str {
        match self {
            Access::Public => "anyone",
            Access::Token => "a bearer token (its role must allow the entry)",
            Access::NodeSigned => "an enrolled node (its signature; no token)",
            Access::TokenOrNodeSigned => "a bearer token, or none for an entry the node signs",
        }
    }
}

/// What answers a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Endpoint {
    Checkpoint,
    Tile,
    Submit,
    Inclusion,
    Consistency,
    TlogProof,
    Entry,
    State,
    TrustRoot,
    Models,
    Model,
    Approvals,
    Revocations,
    Exceptions,
    Nodes,
    Heartbeat,
    LineageSize,
    LineagePost,
    LineageRecord,
    LineageProof,
    LineageSearch,
    LineageEvidence,
    Policy,
    PendingList,
    PendingPost,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

/// One route of the table.
pub type Route = modelgate_http::routes::Route<Access, Endpoint>;

const fn r(method: &'static str, path: &'static str, access: Access, endpoint: Endpoint) -> Route {
    Route::new(method, path, access, endpoint)
}

use Access::{NodeSigned, Public, Token, TokenOrNodeSigned};
use Endpoint as E;

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    r("GET", "/log/checkpoint", Public, E::Checkpoint),
    r("GET", "/log/tile/{*path}", Public, E::Tile),
    r("POST", "/api/v1/entries", TokenOrNodeSigned, E::Submit),
    r("GET", "/api/v1/entries/{index}", Public, E::Entry),
    r("GET", "/api/v1/proof/inclusion", Public, E::Inclusion),
    r("GET", "/api/v1/proof/consistency", Public, E::Consistency),
    r("GET", "/api/v1/tlog-proof/{index}", Public, E::TlogProof),
    r("GET", "/api/v1/state", Public, E::State),
    r("GET", "/api/v1/trust-root", Public, E::TrustRoot),
    r("GET", "/api/v1/models", Public, E::Models),
    r("GET", "/api/v1/models/{digest}", Public, E::Model),
    r("GET", "/api/v1/approvals", Public, E::Approvals),
    r("GET", "/api/v1/revocations", Public, E::Revocations),
    r("GET", "/api/v1/exceptions", Public, E::Exceptions),
    r("GET", "/api/v1/policy", Public, E::Policy),
    r("GET", "/api/v1/nodes", Public, E::Nodes),
    r("POST", "/api/v1/nodes/{id}/heartbeat", NodeSigned, E::Heartbeat),
    r("GET", "/api/v1/nodes/{id}/lineage", Public, E::LineageSize),
    r("POST", "/api/v1/nodes/{id}/lineage", NodeSigned, E::LineagePost),
    r("GET", "/api/v1/nodes/{id}/lineage/{index}", Public, E::LineageRecord),
    r(
        "GET",
        "/api/v1/nodes/{id}/lineage/{index}/proof",
        Public,
        E::LineageProof,
    ),
    r("GET", "/api/v1/lineage", Public, E::LineageSearch),
    r("GET", "/api/v1/lineage/evidence", Public, E::LineageEvidence),
    r("GET", "/api/v1/pending", Public, E::PendingList),
    r("POST", "/api/v1/pending", Token, E::PendingPost),
    r("GET", "/healthz", Public, E::Healthz),
    r("GET", "/readyz", Public, E::Readyz),
    r("GET", "/metrics", Public, E::Metrics),
    r("GET", "/openapi.json", Public, E::OpenApi),
];

/// The handler of an endpoint (one exhaustive match: an endpoint without a
/// handler does not compile).
pub(super) fn handler(e: Endpoint) -> axum::routing::MethodRouter<Shared> {
    match e {
        E::Checkpoint => get(checkpoint),
        E::Tile => get(tile),
        E::Submit => post(submit),
        E::Inclusion => get(inclusion),
        E::Consistency => get(consistency),
        E::TlogProof => get(tlog_proof),
        E::Entry => get(entry),
        E::State => get(state),
        E::TrustRoot => get(trust_root),
        E::Models => get(models),
        E::Model => get(model),
        E::Approvals => get(approvals),
        E::Revocations => get(revocations),
        E::Exceptions => get(exceptions),
        E::Nodes => get(nodes),
        E::Heartbeat => post(heartbeat),
        E::LineageSize => get(lineage_size),
        E::LineagePost => post(lineage_post),
        E::LineageRecord => get(lineage_record),
        E::LineageProof => get(lineage_proof),
        E::LineageSearch => get(lineage_search),
        E::LineageEvidence => get(lineage_evidence),
        E::Policy => get(policy),
        E::PendingList => get(pending_list),
        E::PendingPost => post(pending_post),
        E::Healthz => get(|| async { "ok\n" }),
        E::Readyz => get(readyz),
        E::Metrics => get(metrics),
        E::OpenApi => get(openapi),
    }
}

/// Enforce a route's access on the request's head, before its handler (and
/// before a byte of its body is read).
pub(super) async fn guard(AxState((a, access)): AxState<(Shared, Access)>, req: Request, next: Next) -> Response {
    let token = bearer(req.headers());
    let known = |t: &str| match a.tokens.check(t) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ApiError::new(ErrorKind::UnknownToken, "the bearer token is not known")),
        Err(e) => Err(ApiError::internal("tokens", e.to_string())),
    };
    let verdict = match (access, token) {
        (Access::Public | Access::NodeSigned, _) => Ok(()),
        (Access::Token, None) => Err(ApiError::new(
            ErrorKind::MissingToken,
            "an Authorization: Bearer token is required",
        )),
        (Access::Token | Access::TokenOrNodeSigned, Some(t)) => known(t),
        (Access::TokenOrNodeSigned, None) => Ok(()),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The table as the README shows it.
pub fn markdown() -> String {
    modelgate_http::routes::markdown(ROUTES, "route", Access::describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table between its markers is this table, byte for byte.
    #[test]
    fn the_readme_lists_every_route_with_its_access() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let start = "<!-- authority routes: generated from modelgate_authority::http::routes::ROUTES -->\n";
        let from = readme.find(start).expect("the README's authority routes marker") + start.len();
        let to = from + readme[from..].find("<!-- /authority routes -->").unwrap();
        assert_eq!(
            &readme[from..to],
            markdown(),
            "the README's authority routes; the table should be:\n{}",
            markdown()
        );
    }

    #[test]
    fn every_route_is_declared_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {} twice", r.method, r.path);
        }
    }
}
