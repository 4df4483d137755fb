//! The crate's error (setting a node up and running it), and the gateway's
//! HTTP refusals: one type, [`Refusal`], whose status, code and check come
//! from one exhaustive match.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use modelgate_governance::{Check, ContainmentReason, ReasonCode};

use crate::lineage::LineageError;

/// Why a node could not be set up or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (missing upstream, a bad token hash, …).
    #[error("{0}")]
    Config(String),
    /// From the node's libraries (configuration, files).
    #[error(transparent)]
    Node(#[from] modelgate_node::NodeError),
    /// A thread or runtime could not be started.
    #[error("couldn't start {0}")]
    Start(String),
    /// The listening address could not be bound.
    #[error("couldn't listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The lineage log failed.
    #[error(transparent)]
    Lineage(#[from] LineageError),
    /// A signed entry could not be built.
    #[error(transparent)]
    Entry(#[from] modelgate_governance::EntryError),
    /// The server stopped with an error.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Everything the gateway refuses, each with what the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// More calls in progress than `max_in_flight`.
    Overloaded {
        /// The bound.
        max_in_flight: usize,
    },
    /// No caller's bearer token.
    InvalidApiKey,
    /// The caller asked for a scope it does not have.
    ScopeNotPermitted {
        /// The caller.
        principal: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
    /// The body is not a JSON object with a string `model`.
    InvalidBody,
    /// The body was not read: too large, too slow, or no room in the
    /// budget for bodies in flight.
    Body(modelgate_http::BodyError),
    /// No model of that name on this node.
    ModelNotFound {
        /// The name asked for.
        model: String,
    },
    /// The model has not finished its lifecycle.
    Starting {
        /// The model.
        model: String,
    },
    /// The model is contained.
    Contained {
        /// The model.
        model: String,
        /// Why.
        reason: ContainmentReason,
        /// The check that failed.
        check: Check,
        /// The governance decision's reason, when a decision refused it.
        decision: Option<ReasonCode>,
        /// What failed.
        detail: String,
    },
    /// The model's files changed after their last verification.
    UnverifiedChange {
        /// The model.
        model: String,
    },
    /// No fresh verified governance view.
    SyncInterrupted {
        /// Why not.
        detail: String,
    },
    /// The governance decision refuses the call.
    Decision {
        /// The decision's first reason.
        code: ReasonCode,
        /// The scope.
        scope: String,
        /// What the decision said.
        detail: String,
    },
    /// The call's lineage record could not be written (or encoded).
    LineageNotDurable {
        /// Why.
        detail: String,
    },
    /// The inference server did not answer.
    UpstreamUnreachable {
        /// Why.
        detail: String,
    },
    /// No such route.
    NoRoute,
    /// The caller's token does not give it the right to read this.
    NotReadable {
        /// The caller.
        principal: String,
        /// What it asked to read.
        what: String,
    },
    /// A lineage id that is not a decimal index.
    InvalidLineageId,
    /// No lineage record at that index.
    NoRecord {
        /// The index.
        index: u64,
        /// The log's size.
        size: u64,
    },
    /// The lineage log (or the authority, for the governance half of a
    /// proof) could not be read.
    LineageUnavailable {
        /// Why.
        detail: String,
    },
    /// Anchored, but not yet covered by the authority's checkpoint.
    AnchorPending {
        /// What was asked of the authority.
        url: String,
    },
    /// A fault of the gateway itself (the detail is logged, never sent).
    Internal {
        /// What failed (logged only).
        detail: String,
    },
}

/// A refusal's HTTP status, its stable code, and the EG-MODEL-001 §3
/// check it fails (none for what is not a governance check: overload, a
/// malformed body, a route or id that does not exist, a gateway fault).
pub struct RefusalParts {
    /// The status.
    pub status: StatusCode,
    /// The code (`error.code` in the body).
    pub code: &'static str,
    /// The check.
    pub check: Option<Check>,
}

impl Refusal {
    /// The one mapping from refusal to status, code and check.
    pub fn parts(&self) -> RefusalParts {
        use Check as C;
        use StatusCode as S;
        let (status, code, check) = match self {
            Refusal::Overloaded { .. } => (S::TOO_MANY_REQUESTS, "overloaded", None),
            Refusal::InvalidApiKey => (S::UNAUTHORIZED, "invalid_api_key", Some(C::ModelScopeContinuity)),
            Refusal::ScopeNotPermitted { .. } => (S::FORBIDDEN, "ScopeNotPermitted", Some(C::ModelScopeContinuity)),
            Refusal::InvalidBody => (S::BAD_REQUEST, "invalid_request", None),
            Refusal::Body(e) => (e.status(), e.code(), None),
            Refusal::ModelNotFound { .. } => (S::NOT_FOUND, "model_not_found", Some(C::ModelRuntimeContinuity)),
            Refusal::Starting { .. } => (S::SERVICE_UNAVAILABLE, "Starting", Some(C::ModelRuntimeContinuity)),
            // Refused by governance (revoked, approval expired, …): the
            // decision's code, 403 as for a call the decision refuses; no
            // retry will change it. Any other containment is 503.
            Refusal::Contained {
                decision: Some(code), ..
            } => (S::FORBIDDEN, code.as_str(), Some(Check::of_decision(*code))),
            Refusal::Contained {
                reason,
                check,
                decision: None,
                ..
            } => (S::SERVICE_UNAVAILABLE, reason.code(), Some(*check)),
            Refusal::UnverifiedChange { .. } => (
                S::SERVICE_UNAVAILABLE,
                ContainmentReason::UnauthorizedModification.code(),
                Some(C::RuntimeIntegrityVerification),
            ),
            Refusal::SyncInterrupted { .. } => (
                S::SERVICE_UNAVAILABLE,
                ContainmentReason::SyncInterrupted.code(),
                Some(C::GovernancePolicySynchronization),
            ),
            Refusal::Decision { code, .. } => (S::FORBIDDEN, code.as_str(), Some(Check::of_decision(*code))),
            Refusal::LineageNotDurable { .. } => (
                S::SERVICE_UNAVAILABLE,
                ContainmentReason::AuditDiscontinuity.code(),
                Some(C::ExecutionLineageContinuity),
            ),
            Refusal::UpstreamUnreachable { .. } => (S::BAD_GATEWAY, "upstream_unreachable", None),
            Refusal::NoRoute => (S::NOT_FOUND, "not_found", None),
            Refusal::NotReadable { .. } => (S::FORBIDDEN, "forbidden", None),
            Refusal::InvalidLineageId => (S::BAD_REQUEST, "invalid_id", None),
            Refusal::NoRecord { .. } => (S::NOT_FOUND, "not_found", None),
            Refusal::LineageUnavailable { .. } => (S::SERVICE_UNAVAILABLE, "lineage_unavailable", None),
            Refusal::AnchorPending { .. } => (S::ACCEPTED, "anchor_pending", None),
            Refusal::Internal { .. } => (S::INTERNAL_SERVER_ERROR, "internal", None),
        };
        RefusalParts { status, code, check }
    }

    /// What the caller is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Overloaded { max_in_flight } => {
                format!("{max_in_flight} calls are already in progress on this node; retry shortly")
            }
            Refusal::InvalidApiKey => "a caller's bearer token is required (Authorization: Bearer …)".into(),
            Refusal::ScopeNotPermitted { principal, scopes } => {
                format!("caller {principal} may call in {scopes:?} only")
            }
            Refusal::InvalidBody => "the body must be a JSON object with a string \"model\"".into(),
            Refusal::Body(e) => e.to_string(),
            Refusal::ModelNotFound { model } => format!("this node serves no model named {model:?}"),
            Refusal::Starting { model } => format!("model {model} has not finished its lifecycle yet"),
            Refusal::Contained { model, detail, .. } => format!("model {model} is contained: {detail}"),
            Refusal::UnverifiedChange { model } => {
                format!("model {model}'s files changed since they were verified; re-verifying")
            }
            Refusal::SyncInterrupted { detail } => detail.clone(),
            Refusal::Decision { scope, detail, .. } => format!("denied in scope {scope}: {detail}"),
            Refusal::LineageNotDurable { detail } => detail.clone(),
            Refusal::UpstreamUnreachable { detail } => format!("the inference server did not answer: {detail}"),
            Refusal::NoRoute => "no such route".into(),
            Refusal::NotReadable { principal, what } => format!("caller {principal} may not read {what}"),
            Refusal::InvalidLineageId => "a lineage id is a decimal index".into(),
            Refusal::NoRecord { index, size } => format!("no lineage record {index} (the log has {size})"),
            Refusal::LineageUnavailable { detail } => detail.clone(),
            Refusal::AnchorPending { url } => {
                format!("{url}: not yet covered by the authority's checkpoint; retry in a second")
            }
            Refusal::Internal { .. } => "the gateway failed answering this request".into(),
        }
    }
}

/// The OpenAI `error.type` for a status.
fn kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        429 => "rate_limit_error",
        403 => "permission_error",
        404 => "not_found_error",
        400 | 408 | 413 | 422 => "invalid_request_error",
        500 => "internal_error",
        _ => "service_unavailable",
    }
}

impl IntoResponse for Refusal {
    /// An OpenAI-style error, with the check it failed beside the code
    /// (`error.check`, and the `x-modelgate-check` header).
    fn into_response(self) -> Response {
        let p = self.parts();
        if let Refusal::Internal { detail } = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let body = serde_json::json!({"error": {"message": self.message(), "type": kind(p.status), "param": null,
                                      "code": p.code, "check": p.check}});
        let mut r = (p.status, Json(body)).into_response();
        if let Some(c) = p.check {
            r.headers_mut()
                .insert("x-modelgate-check", HeaderValue::from_static(c.code()));
        }
        if matches!(self, Refusal::Overloaded { .. }) || matches!(&self, Refusal::Body(e) if e.retry_after().is_some())
        {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
