//! The authority's HTTP errors: one type, a kind and a message, whose
//! status, code and Retry-After come from one exhaustive match on the kind. The body is always
//! `{"error": {"code", "message"}}`; a 500 never carries its detail (it may
//! name paths, SQL or internal state), which goes to the authority's log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use modelgate_governance::FoldError;

/// The header that names the sequencer's URL on a replica's answers to writes.
pub const SEQUENCER_HEADER: &str = "modelgate-sequencer";
/// The header that tells a node how many of its lineage records the
/// authority holds, on a batch that does not start there.
pub const LINEAGE_SIZE_HEADER: &str = "x-modelgate-lineage-size";
/// The header a replica marks the writes it passes on with: a request
/// carrying it is never passed on again (no loop between two replicas that
/// each believe the other sequences).
pub const FORWARDED_HEADER: &str = "modelgate-forwarded";

/// What went wrong, as the API names it: each kind has one status, one
/// stable code and one Retry-After ([`ErrorKind::parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such route.
    NoRoute,
    /// A tile path that does not parse.
    BadTilePath,
    /// A tile beyond the log's size.
    NoSuchTile,
    /// A request body that was not read: too large, too slow, no room in
    /// the budget for bodies in flight, or cut short.
    Body(modelgate_http::BodyError),
    /// A heartbeat body that is not text.
    BadText,
    /// Not a well-formed signed entry.
    MalformedEntry,
    /// A write without `Content-Type: application/json`.
    ContentType,
    /// A write from another site's page or origin.
    CrossOrigin,
    /// Too many unauthenticated writes from one client.
    RateLimited {
        /// When to come back.
        seconds: u64,
    },
    /// A write that needs a token came without one.
    MissingToken,
    /// A token the authority does not know.
    UnknownToken,
    /// A token whose role may not submit this entry type.
    WrongRole,
    /// The writer's queue is full (overload).
    Busy,
    /// Shutting down, or the writer stopped.
    Unavailable,
    /// A replica that cannot pass a write on: no sequencer holds the lease
    /// now, or the one that does did not answer.
    NotSequencer {
        /// The sequencer's URL, when one is known (also sent as the
        /// `Modelgate-Sequencer` header).
        sequencer: Option<String>,
    },
    /// The fold refused the entry: its rule's code.
    Refused(modelgate_governance::Rule),
    /// The store could not write; nothing was appended.
    StoreUnavailable,
    /// The log key cannot sign (its token is gone); nothing was appended.
    SignerUnavailable,
    /// Sizes or indexes a proof cannot be made for.
    OutOfRange,
    /// An index the log does not hold (yet).
    NotInLog,
    /// A model digest that is not registered.
    UnknownModel,
    /// A node that is not enrolled.
    NodeUnknown,
    /// A heartbeat whose signature does not verify.
    HeartbeatInvalid,
    /// A heartbeat outside the time window.
    HeartbeatTime,
    /// A heartbeat not after the previous one.
    HeartbeatReplayed,
    /// `/readyz`: the writer is not running.
    NotReady,
    /// `/readyz`: a durable write has not returned for too long.
    WriterStalled,
    /// `/readyz`: the last durable write failed.
    WriterFailing,
    /// A pending approval signed by no approver of the trust root.
    NoApprover,
    /// The pool of pending approvals is full.
    PendingFull,
    /// A pending approval carrying a signature the pool cannot count (a key
    /// no approver holds, one that does not verify, a second by one approver).
    PendingSignature,
    /// A copy of an approval the log already holds (the message names its index).
    AlreadyApproved,
    /// A lineage batch that does not start at the records held (the
    /// message names the size held; the `x-modelgate-lineage-size` header
    /// carries it too).
    LineageGap {
        /// Records of the node the authority holds.
        size: u64,
    },
    /// A lineage batch that is not what it claims.
    LineageInvalid,
    /// A lineage batch signed by the node that contradicts its history
    /// (kept as evidence).
    LineageInconsistent,
    /// A lineage batch with prompt or output content.
    LineageContent,
    /// A record whose proof cannot be made until the node anchors it.
    NotYetAnchored,
    /// A fault of the authority itself.
    /// (Its message is logged, never sent.)
    Internal(&'static str),
}

/// Everything the authority's API answers with an error: a kind and what
/// the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// What exactly (for an internal error: logged, never sent).
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An internal error of `code`'s part.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal(code), detail.to_string())
    }

    /// A body that was not read.
    pub fn body(e: modelgate_http::BodyError) -> Self {
        let message = e.to_string();
        Self::new(ErrorKind::Body(e), message)
    }

    /// The fold refused the entry.
    pub fn refused(e: &FoldError) -> Self {
        Self::new(ErrorKind::Refused(e.rule), e.to_string())
    }

    /// Status, code and Retry-After.
    pub fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        self.kind.parts()
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self.kind {
            ErrorKind::Internal(_) => "internal error; the authority's log has the detail".into(),
            _ => self.message.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.parts().1)
    }
}

impl std::error::Error for ApiError {}

/// A blocking task that did not finish (it panicked, or the runtime is
/// stopping): the request fails closed as an internal error.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal("internal", e)
    }
}

/// A store that could not be read: the request fails closed as an
/// internal error (the detail is logged, never sent).
impl From<modelgate_store::StoreError> for ApiError {
    fn from(e: modelgate_store::StoreError) -> Self {
        Self::internal("store", e)
    }
}

impl From<crate::lineage::ReplicationError> for ApiError {
    fn from(e: crate::lineage::ReplicationError) -> Self {
        use crate::lineage::ReplicationError as L;
        let message = e.to_string();
        match e {
            L::Gap { size } => Self::new(ErrorKind::LineageGap { size }, message),
            L::Invalid(m) => Self::new(ErrorKind::LineageInvalid, m),
            L::Content(m) => Self::new(ErrorKind::LineageContent, m),
            L::Inconsistent(m) => Self::new(ErrorKind::LineageInconsistent, m),
            L::Store(m) => Self::internal("lineage", m),
        }
    }
}

impl From<crate::pending::PendingError> for ApiError {
    fn from(e: crate::pending::PendingError) -> Self {
        use crate::pending::PendingError as P;
        let message = e.to_string();
        match e {
            P::Malformed(m) => Self::new(ErrorKind::MalformedEntry, m),
            P::Refused(e) => Self::refused(&e),
            P::NoApprover => Self::new(ErrorKind::NoApprover, message),
            P::Signature(m) => Self::new(ErrorKind::PendingSignature, m),
            P::AlreadyApproved { .. } => Self::new(ErrorKind::AlreadyApproved, message),
            P::Full => Self::new(ErrorKind::PendingFull, message),
            P::Internal(m) => Self::internal("pending", m),
        }
    }
}

impl From<crate::proof::ProofUnavailable> for ApiError {
    fn from(e: crate::proof::ProofUnavailable) -> Self {
        use crate::proof::ProofUnavailable as P;
        match e {
            P::NotFound(m) => Self::new(ErrorKind::NotInLog, m),
            P::NotYet(m) => Self::new(ErrorKind::NotYetAnchored, m),
            P::Store(m) => Self::internal("lineage", m),
        }
    }
}

impl ErrorKind {
    /// Status, code, and seconds for Retry-After (none when retrying
    /// would not help or is not the point).
    pub fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        use StatusCode as S;
        match self {
            ErrorKind::NoRoute => (S::NOT_FOUND, "not-found", None),
            ErrorKind::BadTilePath => (S::NOT_FOUND, "bad-tile-path", None),
            ErrorKind::NoSuchTile => (S::NOT_FOUND, "no-such-tile", None),
            ErrorKind::Body(e) => (e.status(), e.code(), e.retry_after()),
            ErrorKind::BadText => (S::BAD_REQUEST, "bad-body", None),
            ErrorKind::MalformedEntry => (S::BAD_REQUEST, "malformed-entry", None),
            ErrorKind::ContentType => (S::UNSUPPORTED_MEDIA_TYPE, "content-type", None),
            ErrorKind::CrossOrigin => (S::FORBIDDEN, "cross-origin", None),
            ErrorKind::RateLimited { seconds, .. } => (S::TOO_MANY_REQUESTS, "rate-limited", Some(*seconds)),
            ErrorKind::MissingToken => (S::UNAUTHORIZED, "missing-token", None),
            ErrorKind::UnknownToken => (S::UNAUTHORIZED, "unknown-token", None),
            ErrorKind::WrongRole => (S::FORBIDDEN, "wrong-role", None),
            ErrorKind::Busy => (S::SERVICE_UNAVAILABLE, "busy", Some(1)),
            ErrorKind::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable", Some(1)),
            ErrorKind::NotSequencer { .. } => (S::SERVICE_UNAVAILABLE, "not-sequencer", Some(1)),
            ErrorKind::Refused(rule) => (S::UNPROCESSABLE_ENTITY, rule.code(), None),
            ErrorKind::StoreUnavailable => (S::SERVICE_UNAVAILABLE, "store-unavailable", Some(1)),
            ErrorKind::SignerUnavailable => (S::SERVICE_UNAVAILABLE, "signer-unavailable", Some(5)),
            ErrorKind::OutOfRange => (S::BAD_REQUEST, "out-of-range", None),
            ErrorKind::NotInLog => (S::NOT_FOUND, "out-of-range", None),
            ErrorKind::UnknownModel => (S::NOT_FOUND, "unknown-model", None),
            ErrorKind::NodeUnknown => (S::NOT_FOUND, "node-unknown", None),
            ErrorKind::HeartbeatInvalid => (S::UNAUTHORIZED, "heartbeat-invalid", None),
            ErrorKind::HeartbeatTime => (S::UNPROCESSABLE_ENTITY, "heartbeat-time", None),
            ErrorKind::HeartbeatReplayed => (S::CONFLICT, "heartbeat-replayed", None),
            ErrorKind::NotReady => (S::SERVICE_UNAVAILABLE, "not-ready", None),
            ErrorKind::WriterStalled => (S::SERVICE_UNAVAILABLE, "writer-stalled", Some(1)),
            ErrorKind::WriterFailing => (S::SERVICE_UNAVAILABLE, "writer-failing", Some(1)),
            ErrorKind::NoApprover => (S::UNPROCESSABLE_ENTITY, "no-approver", None),
            ErrorKind::PendingFull => (S::SERVICE_UNAVAILABLE, "pending-full", Some(60)),
            ErrorKind::PendingSignature => (S::UNPROCESSABLE_ENTITY, "pending-signature", None),
            ErrorKind::AlreadyApproved => (S::CONFLICT, "already-approved", None),
            ErrorKind::LineageGap { .. } => (S::CONFLICT, "lineage-gap", None),
            ErrorKind::LineageInvalid => (S::UNPROCESSABLE_ENTITY, "lineage-invalid", None),
            ErrorKind::LineageInconsistent => (S::CONFLICT, "lineage-inconsistent", None),
            ErrorKind::LineageContent => (S::UNPROCESSABLE_ENTITY, "lineage-content", None),
            ErrorKind::NotYetAnchored => (S::CONFLICT, "not-yet-anchored", Some(5)),
            ErrorKind::Internal(code) => (S::INTERNAL_SERVER_ERROR, code, None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry) = self.parts();
        if let ErrorKind::Internal(code) = &self.kind {
            tracing::error!(code, detail = %self.message, "internal error answering a request");
        }
        let mut body = serde_json::json!({"error": {"code": code, "message": self.message()}});
        let sequencer = match &self.kind {
            ErrorKind::NotSequencer { sequencer } => sequencer.clone(),
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
        if let ErrorKind::LineageGap { size } = self.kind {
            r.headers_mut().insert(LINEAGE_SIZE_HEADER, HeaderValue::from(size));
        }
        r
    }
}
