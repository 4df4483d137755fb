//! The public governance console and the infrastructure health dashboard
//! (EG-MODEL-001's "public governance infrastructure"), served by the
//! authority: overview, models, policies, trust root, the governance log, and
//! the nodes' health.
//!
//! Guarantees:
//! - **Read-only and public**: no page needs a login, none writes, and none
//!   shows a secret, a token or a prompt (the authority holds none of those;
//!   heartbeats carry counters, not content).
//! - **Every value escaped**: pages are maud templates, checked at compile
//!   time; maud escapes every interpolated value, so a model name, ticket or
//!   policy text holding markup shows as text.
//! - **A strict Content-Security-Policy** on every answer: no inline script
//!   or style, nothing from another origin; the one script and the one style
//!   sheet are embedded in the binary and served from `assets/`.
//! - **Readable without JavaScript**: every page is complete HTML; the script
//!   only refreshes the health dashboard and the overview, and draws charts.
//! - **Works behind a path prefix**: every link starts with the configured
//!   prefix.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use modelgate_authority::Authority;

pub mod diff;
pub mod index;
mod lineage_pages;
mod pages;
pub mod serve;

pub use index::Index;

/// The policy every console answer carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
/// The in-browser verifier (signed notes, checkpoints, RFC 6962, tlog-proofs).
pub const VERIFY_JS: &str = include_str!("../assets/verify.js");
/// The in-browser lineage-proof verifier (the full chain, on verify.js).
pub const LINEAGE_JS: &str = include_str!("../assets/lineage.js");
/// The proof viewer's page script.
pub const VIEWER_JS: &str = include_str!("../assets/viewer.js");

/// A CSP source for an inline script or style: `sha256-` and its base64 hash.
fn csp_hash(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// The console's shared state.
pub struct Console {
    /// The authority it shows.
    pub authority: Arc<Authority>,
    /// Every link's prefix: `""` at the root, `/governance` behind a proxy.
    pub prefix: String,
    /// The incremental index of the log and the nodes' heartbeats.
    pub index: Mutex<Index>,
}

impl Console {
    /// A console for `authority`, its links under `prefix` (no trailing `/`).
    pub fn new(authority: Arc<Authority>, prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
            index: Mutex::new(Index::default()),
        })
    }

    /// Bring the index up to the served size and sample heartbeats.
    pub fn refresh(&self) {
        if let Ok(mut i) = self.index.lock() {
            i.refresh(&self.authority);
        }
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// Refresh the index once a second (heartbeats have no other trigger), for
/// as long as the runtime runs.
pub fn spawn_refresher(console: &Arc<Console>) {
    let c = Arc::clone(console);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let c2 = Arc::clone(&c);
            if tokio::task::spawn_blocking(move || c2.refresh()).await.is_err() {
                tracing::warn!("console: an index refresh failed");
            }
        }
    });
}

type Shared = Arc<Console>;

/// The console's routes (relative to its prefix: nest them there when the
/// prefix is not empty).
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/models", get(models))
        .route("/models/{digest}", get(model))
        .route("/policies", get(policies))
        .route("/trust-root", get(trust_root))
        .route("/entries", get(entries))
        .route("/entries/{index}", get(entry))
        .route("/find", get(find))
        .route("/health", get(health))
        .route("/health.json", get(health_json))
        .route("/lineage", get(lineage_explorer))
        .route("/lineage/{node}/{index}", get(lineage_record))
        .route("/lineage/{node}/{index}/proof", get(lineage_proof))
        .route("/proof", get(proof_viewer))
        .route("/proof/viewer.html", get(viewer_file))
        .route(
            "/assets/console.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/verify.js",
            get(|| async { asset(VERIFY_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/lineage.js",
            get(|| async { asset(LINEAGE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/viewer.js",
            get(|| async { asset(VIEWER_JS, "text/javascript; charset=utf-8") }),
        )
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

/// Every answer: the CSP, no sniffing, no framing, no referrer to elsewhere.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Run a page builder off the async threads (it may read the store).
async fn page(c: Shared, f: impl FnOnce(&Console) -> Result<maud::Markup, Miss> + Send + 'static) -> Response {
    page_with_status(c, move |c| f(c).map(|m| (StatusCode::OK, m))).await
}

/// [`page`] for a page that chooses its own status (a form answered with
/// what was wrong in it).
async fn page_with_status(
    c: Shared,
    f: impl FnOnce(&Console) -> Result<(StatusCode, maud::Markup), Miss> + Send + 'static,
) -> Response {
    let r = tokio::task::spawn_blocking(move || {
        c.refresh();
        f(&c)
    })
    .await;
    match r {
        Ok(Ok((status, m))) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            m.into_string(),
        )
            .into_response(),
        Ok(Err(Miss(status, what))) => {
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], what).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page failed: {e}")).into_response(),
    }
}

/// A page that cannot be shown: its status and why.
pub struct Miss(StatusCode, String);

async fn overview(State(c): State<Shared>) -> Response {
    page(c, |c| Ok(pages::overview(c))).await
}
#[derive(serde::Deserialize)]
struct ModelsQuery {
    page: Option<usize>,
    q: Option<String>,
}

async fn models(State(c): State<Shared>, Query(q): Query<ModelsQuery>) -> Response {
    page(c, move |c| {
        Ok(pages::models(c, q.page.unwrap_or(0), q.q.as_deref().unwrap_or("")))
    })
    .await
}
async fn model(State(c): State<Shared>, Path(digest): Path<String>) -> Response {
    page(c, move |c| pages::model(c, &digest)).await
}
async fn policies(State(c): State<Shared>) -> Response {
    page(c, |c| Ok(pages::policies(c))).await
}
async fn trust_root(State(c): State<Shared>) -> Response {
    page(c, |c| Ok(pages::trust_root(c))).await
}

#[derive(serde::Deserialize)]
struct From {
    from: Option<u64>,
}

async fn lineage_explorer(State(c): State<Shared>, Query(q): Query<pages::ExplorerQuery>) -> Response {
    page_with_status(c, move |c| pages::lineage_explorer(c, &q)).await
}

async fn lineage_record(State(c): State<Shared>, Path((node, index)): Path<(String, String)>) -> Response {
    page(c, move |c| {
        let i = index
            .parse::<u64>()
            .map_err(|_| Miss(StatusCode::BAD_REQUEST, format!("{index:?} is not a lineage id")))?;
        pages::lineage_record(c, &node, i)
    })
    .await
}

/// A record's full-chain proof, as a download (the same document as the
/// authority's API, for a console on a listener of its own).
async fn lineage_proof(State(c): State<Shared>, Path((node, index)): Path<(String, u64)>) -> Response {
    use modelgate_authority::proof::ProofUnavailable as P;
    let name = format!(
        "attachment; filename=\"{}-{index}.proof.json\"",
        node.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-', "_")
    );
    match tokio::task::spawn_blocking(move || modelgate_authority::proof::full_proof(&c.authority, &node, index)).await
    {
        Ok(Ok(p)) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            serde_json::to_vec_pretty(&p).unwrap_or_default(),
        )
            .into_response(),
        Ok(Err(P::NotFound(m))) => (StatusCode::NOT_FOUND, m).into_response(),
        Ok(Err(P::NotYet(m))) => (StatusCode::CONFLICT, m).into_response(),
        Ok(Err(P::Store(m))) => (StatusCode::SERVICE_UNAVAILABLE, m).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct ProofQuery {
    index: Option<u64>,
    node: Option<String>,
    lineage: Option<u64>,
}

async fn proof_viewer(State(c): State<Shared>, Query(q): Query<ProofQuery>) -> Response {
    page(c, move |c| {
        let lineage = match (q.node, q.lineage) {
            (Some(n), Some(i)) => Some((n, i)),
            (None, None) => None,
            _ => {
                return Err(Miss(
                    StatusCode::BAD_REQUEST,
                    "a lineage proof is asked for with both node= and lineage=".into(),
                ))
            }
        };
        pages::proof_viewer(c, q.index, lineage)
    })
    .await
}

/// The self-contained viewer, as a download.
async fn viewer_file(State(c): State<Shared>) -> Response {
    match tokio::task::spawn_blocking(move || pages::viewer_file(&c)).await {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"modelgate-proof-viewer.html\"",
                ),
            ],
            html,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn entries(State(c): State<Shared>, Query(q): Query<From>) -> Response {
    page(c, move |c| Ok(pages::entries(c, q.from))).await
}
async fn entry(State(c): State<Shared>, Path(index): Path<String>) -> Response {
    page(c, move |c| {
        let i = index
            .parse::<u64>()
            .map_err(|_| Miss(StatusCode::BAD_REQUEST, format!("{index:?} is not an entry index")))?;
        pages::entry(c, i)
    })
    .await
}

#[derive(serde::Deserialize)]
struct Q {
    q: Option<String>,
}

/// Jump to an index, a model digest or a node.
async fn find(State(c): State<Shared>, Query(q): Query<Q>) -> Response {
    let q = q.q.unwrap_or_default().trim().to_owned();
    let target = if q.parse::<u64>().is_ok() {
        Some(format!("/entries/{q}"))
    } else if c.authority.state().models.contains_key(q.as_str()) {
        Some(format!("/models/{q}"))
    } else {
        None
    };
    match target {
        Some(t) => (StatusCode::SEE_OTHER, [(header::LOCATION, c.link(&t))]).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no entry index or registered model digest matches",
        )
            .into_response(),
    }
}

async fn health(State(c): State<Shared>) -> Response {
    page(c, |c| Ok(pages::health(c))).await
}

async fn health_json(State(c): State<Shared>) -> Response {
    let r = tokio::task::spawn_blocking(move || {
        c.refresh();
        pages::health_json(&c)
    })
    .await;
    match r {
        Ok(v) => ([(header::CACHE_CONTROL, "no-cache")], axum::Json(v)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
