//! The authority's HTTP errors: one type, whose status, code and
//! Retry-After come from one exhaustive match. The body is always
//! `{"error": {"code", "message"}}`; a 500 never carries its detail (it may
//! name paths, SQL or internal state), which goes to the authority's log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use modelgate_governance::FoldError;

/// The header that names the sequencer's URL on a replica's answers to writes.
pub const SEQUENCER_HEADER: &str = "modelgate-sequencer";
/// The header a replica marks the writes it passes on with: a request
/// carrying it is never passed on again (no loop between two replicas that
/// each believe the other sequences).
pub const FORWARDED_HEADER: &str = "modelgate-forwarded";

/// Everything the authority's API answers with an error.
#[derive(Debug)]
pub enum ApiError {
    /// No such route.
    NoRoute(String),
    /// A tile path that does not parse.
    BadTilePath(String),
    /// A tile beyond the log's size.
    NoSuchTile(String),
    /// A request body that was not read: too large, too slow, no room in
    /// the budget for bodies in flight, or cut short.
    Body(modelgate_http::BodyError),
    /// A heartbeat body that is not text.
    BadText(String),
    /// Not a well-formed signed entry.
    MalformedEntry(String),
    /// A write without `Content-Type: application/json`.
    ContentType(String),
    /// A write from another site's page or origin.
    CrossOrigin(String),
    /// Too many unauthenticated writes from one client.
    RateLimited {
        /// What the client is told.
        message: String,
        /// When to come back.
        seconds: u64,
    },
    /// A write that needs a token came without one.
    MissingToken(String),
    /// A token the authority does not know.
    UnknownToken(String),
    /// A token whose role may not submit this entry type.
    WrongRole(String),
    /// The writer's queue is full (overload).
    Busy(String),
    /// Shutting down, or the writer stopped.
    Unavailable(String),
    /// A replica that cannot pass a write on: no sequencer holds the lease
    /// now, or the one that does did not answer.
    NotSequencer {
        /// What the client is told.
        message: String,
        /// The sequencer's URL, when one is known (also sent as the
        /// `Modelgate-Sequencer` header).
        sequencer: Option<String>,
    },
    /// The fold refused the entry: its rule's code.
    Refused(FoldError),
    /// The store could not write; nothing was appended.
    StoreUnavailable(String),
    /// Sizes or indexes a proof cannot be made for.
    OutOfRange(String),
    /// An index the log does not hold (yet).
    NotInLog(String),
    /// A model digest that is not registered.
    UnknownModel(String),
    /// A node that is not enrolled.
    NodeUnknown(String),
    /// A heartbeat whose signature does not verify.
    HeartbeatInvalid(String),
    /// A heartbeat outside the time window.
    HeartbeatTime(String),
    /// A heartbeat not after the previous one.
    HeartbeatReplayed(String),
    /// `/readyz`: the writer is not running.
    NotReady(String),
    /// `/readyz`: a durable write has not returned for too long.
    WriterStalled(String),
    /// `/readyz`: the last durable write failed.
    WriterFailing(String),
    /// A pending approval signed by no approver of the trust root.
    NoApprover(String),
    /// The pool of pending approvals is full.
    PendingFull(String),
    /// A pending approval carrying a signature the pool cannot count (a key
    /// no approver holds, one that does not verify, a second by one approver).
    PendingSignature(String),
    /// A copy of an approval the log already holds (the message names its index).
    AlreadyApproved(String),
    /// A lineage batch that does not start at the records held (the
    /// message names the size held; the body also carries it as `size`).
    LineageGap(String),
    /// A lineage batch that is not what it claims.
    LineageInvalid(String),
    /// A lineage batch signed by the node that contradicts its history
    /// (kept as evidence).
    LineageInconsistent(String),
    /// A lineage batch with prompt or output content.
    LineageContent(String),
    /// A record whose proof cannot be made until the node anchors it.
    NotYetAnchored(String),
    /// A fault of the authority itself.
    Internal {
        /// A stable code naming the part that failed (`store`, `fold`, …).
        code: &'static str,
        /// What failed (logged, never sent).
        detail: String,
    },
}

impl ApiError {
    /// An internal error of `code`'s part.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            code,
            detail: detail.to_string(),
        }
    }

    /// Status, code, and seconds for Retry-After (none when retrying
    /// would not help or is not the point).
    pub fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        use StatusCode as S;
        match self {
            ApiError::NoRoute(_) => (S::NOT_FOUND, "not-found", None),
            ApiError::BadTilePath(_) => (S::NOT_FOUND, "bad-tile-path", None),
            ApiError::NoSuchTile(_) => (S::NOT_FOUND, "no-such-tile", None),
            ApiError::Body(e) => (e.status(), e.code(), e.retry_after()),
            ApiError::BadText(_) => (S::BAD_REQUEST, "bad-body", None),
            ApiError::MalformedEntry(_) => (S::BAD_REQUEST, "malformed-entry", None),
            ApiError::ContentType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "content-type", None),
            ApiError::CrossOrigin(_) => (S::FORBIDDEN, "cross-origin", None),
            ApiError::RateLimited { seconds, .. } => (S::TOO_MANY_REQUESTS, "rate-limited", Some(*seconds)),
            ApiError::MissingToken(_) => (S::UNAUTHORIZED, "missing-token", None),
            ApiError::UnknownToken(_) => (S::UNAUTHORIZED, "unknown-token", None),
            ApiError::WrongRole(_) => (S::FORBIDDEN, "wrong-role", None),
            ApiError::Busy(_) => (S::SERVICE_UNAVAILABLE, "busy", Some(1)),
            ApiError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", Some(1)),
            ApiError::NotSequencer { .. } => (S::SERVICE_UNAVAILABLE, "not-sequencer", Some(1)),
            ApiError::Refused(e) => (S::UNPROCESSABLE_ENTITY, e.rule.code(), None),
            ApiError::StoreUnavailable(_) => (S::SERVICE_UNAVAILABLE, "store-unavailable", Some(1)),
            ApiError::OutOfRange(_) => (S::BAD_REQUEST, "out-of-range", None),
            ApiError::NotInLog(_) => (S::NOT_FOUND, "out-of-range", None),
            ApiError::UnknownModel(_) => (S::NOT_FOUND, "unknown-model", None),
            ApiError::NodeUnknown(_) => (S::NOT_FOUND, "node-unknown", None),
            ApiError::HeartbeatInvalid(_) => (S::UNAUTHORIZED, "heartbeat-invalid", None),
            ApiError::HeartbeatTime(_) => (S::UNPROCESSABLE_ENTITY, "heartbeat-time", None),
            ApiError::HeartbeatReplayed(_) => (S::CONFLICT, "heartbeat-replayed", None),
            ApiError::NotReady(_) => (S::SERVICE_UNAVAILABLE, "not-ready", None),
            ApiError::WriterStalled(_) => (S::SERVICE_UNAVAILABLE, "writer-stalled", Some(1)),
            ApiError::WriterFailing(_) => (S::SERVICE_UNAVAILABLE, "writer-failing", Some(1)),
            ApiError::NoApprover(_) => (S::UNPROCESSABLE_ENTITY, "no-approver", None),
            ApiError::PendingFull(_) => (S::SERVICE_UNAVAILABLE, "pending-full", Some(60)),
            ApiError::PendingSignature(_) => (S::UNPROCESSABLE_ENTITY, "pending-signature", None),
            ApiError::AlreadyApproved(_) => (S::CONFLICT, "already-approved", None),
            ApiError::LineageGap(_) => (S::CONFLICT, "lineage-gap", None),
            ApiError::LineageInvalid(_) => (S::UNPROCESSABLE_ENTITY, "lineage-invalid", None),
            ApiError::LineageInconsistent(_) => (S::CONFLICT, "lineage-inconsistent", None),
            ApiError::LineageContent(_) => (S::UNPROCESSABLE_ENTITY, "lineage-content", None),
            ApiError::NotYetAnchored(_) => (S::CONFLICT, "not-yet-anchored", Some(5)),
            ApiError::Internal { code, .. } => (S::INTERNAL_SERVER_ERROR, code, None),
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            ApiError::Body(e) => e.to_string(),
            ApiError::Refused(e) => e.to_string(),
            ApiError::RateLimited { message, .. } | ApiError::NotSequencer { message, .. } => message.clone(),
            ApiError::Internal { .. } => "internal error; the authority's log has the detail".into(),
            ApiError::NoRoute(m)
            | ApiError::BadTilePath(m)
            | ApiError::NoSuchTile(m)
            | ApiError::BadText(m)
            | ApiError::MalformedEntry(m)
            | ApiError::NoApprover(m)
            | ApiError::PendingFull(m)
            | ApiError::PendingSignature(m)
            | ApiError::AlreadyApproved(m)
            | ApiError::ContentType(m)
            | ApiError::CrossOrigin(m)
            | ApiError::MissingToken(m)
            | ApiError::UnknownToken(m)
            | ApiError::WrongRole(m)
            | ApiError::Busy(m)
            | ApiError::Unavailable(m)
            | ApiError::StoreUnavailable(m)
            | ApiError::OutOfRange(m)
            | ApiError::NotInLog(m)
            | ApiError::UnknownModel(m)
            | ApiError::NodeUnknown(m)
            | ApiError::HeartbeatInvalid(m)
            | ApiError::HeartbeatTime(m)
            | ApiError::HeartbeatReplayed(m)
            | ApiError::NotReady(m)
            | ApiError::WriterStalled(m)
            | ApiError::WriterFailing(m)
            | ApiError::LineageGap(m)
            | ApiError::LineageInvalid(m)
            | ApiError::LineageInconsistent(m)
            | ApiError::LineageContent(m)
            | ApiError::NotYetAnchored(m) => m.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry) = self.parts();
        if let ApiError::Internal { code, detail } = &self {
            tracing::error!(code, %detail, "internal error answering a request");
        }
        let mut body = serde_json::json!({"error": {"code": code, "message": self.message()}});
        let sequencer = match &self {
            ApiError::NotSequencer { sequencer, .. } => sequencer.clone(),
            _ => None,
        };
        if let Some(url) = &sequencer {
            body["error"]["sequencer"] = url.as_str().into();
        }
        let mut r = (status, Json(body)).into_response();
        if let Some(v) = sequencer.and_then(|u| HeaderValue::from_str(&u).ok()) {
            r.headers_mut().insert(SEQUENCER_HEADER, v);
        }
        if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.max(1).to_string()).ok()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}
