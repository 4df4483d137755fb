//! Decisions: may this caller run this model in this scope on this node, now?
//! A pure function of (state, request, now), and a cache that can never
//! outlive the state it was computed from or the time window in which the
//! answer holds.

use std::collections::HashMap;
use std::sync::Arc;

use modelgate_tlog::Hash;
use serde::Serialize;

use crate::policy::{evaluate, PolicyInput, PolicyOutcome};
use crate::scope::{pattern_matches, validate_scope};
use crate::state::{ModelRecord, State};
use crate::trust_root::RiskTier;

/// A request to run a model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct DecisionRequest {
    /// The model's root digest (hex).
    pub model: String,
    /// The scope the call is made in.
    pub scope: String,
    /// The node serving it.
    pub node: String,
    /// The caller.
    pub principal: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The caller's attributes (Cedar tags on the caller), sorted by key.
    pub attributes: Vec<(String, String)>,
}

/// Stable reason codes. Exactly one is given per decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum ReasonCode {
    /// Allowed under an approval.
    Approved,
    /// Allowed under an exception.
    Exception,
    /// The request is malformed (scope grammar, digest).
    InvalidRequest,
    /// The model is not registered.
    UnknownModel,
    /// The model is revoked.
    Revoked,
    /// The node is not enrolled.
    NodeNotEnrolled,
    /// The node is not enrolled for this scope.
    NodeScope,
    /// The model has no approval or exception at all.
    NoApproval,
    /// Approvals for this scope exist but none is valid yet.
    ApprovalNotYetValid,
    /// Approvals (or exceptions) for this scope exist but all have ended.
    ApprovalExpired,
    /// Approvals exist, none for this scope.
    ScopeNotApproved,
    /// No policy set has been published.
    NoPolicySet,
    /// The Cedar policies deny (a forbid matched, or no permit did).
    PolicyDeny,
    /// A Cedar policy could not be evaluated: deny.
    PolicyError,
}

impl ReasonCode {
    /// The code as a string (`PolicyDeny`, …), for errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Approved => "Approved",
            ReasonCode::Exception => "Exception",
            ReasonCode::InvalidRequest => "InvalidRequest",
            ReasonCode::UnknownModel => "UnknownModel",
            ReasonCode::Revoked => "Revoked",
            ReasonCode::NodeNotEnrolled => "NodeNotEnrolled",
            ReasonCode::NodeScope => "NodeScope",
            ReasonCode::NoApproval => "NoApproval",
            ReasonCode::ApprovalNotYetValid => "ApprovalNotYetValid",
            ReasonCode::ApprovalExpired => "ApprovalExpired",
            ReasonCode::ScopeNotApproved => "ScopeNotApproved",
            ReasonCode::NoPolicySet => "NoPolicySet",
            ReasonCode::PolicyDeny => "PolicyDeny",
            ReasonCode::PolicyError => "PolicyError",
        }
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Run it?
    pub allow: bool,
    /// Why (one code).
    pub reasons: Vec<ReasonCode>,
    /// The approval it runs under.
    pub approval: Option<String>,
    /// The exception it runs under.
    pub exception: Option<String>,
    /// Cedar policy ids that decided (permits for allow, forbids for deny).
    pub policies: Vec<String>,
    /// Human-readable detail (policy errors, which approval ended when).
    pub detail: String,
    /// Digest of the state decided on.
    #[serde(serialize_with = "ser_hex")]
    pub state_digest: Hash,
    /// Size of that state (log entries applied).
    pub state_size: u64,
    /// The decision holds for times in `[valid_from, valid_until)`.
    pub valid_from: u64,
    /// See `valid_from`.
    pub valid_until: u64,
}

fn ser_hex<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

struct Basis<'a> {
    approval: Option<&'a str>,
    exception: Option<&'a str>,
    tier: RiskTier,
}

/// Decide `request` against `state` at time `now` (POSIX seconds).
pub fn decide(state: &State, request: &DecisionRequest, now: u64) -> Decision {
    let mut d = Decision {
        allow: false,
        reasons: vec![],
        approval: None,
        exception: None,
        policies: vec![],
        detail: String::new(),
        state_digest: state.digest(),
        state_size: state.size,
        valid_from: 0,
        valid_until: u64::MAX,
    };
    let model = match admissible(state, request) {
        Ok(m) => m,
        Err((code, detail)) => return deny(d, code, detail),
    };
    (d.valid_from, d.valid_until) = window(state, &request.model, now);
    let basis = match basis(state, request, now) {
        Ok(b) => b,
        Err((code, why)) => return deny(d, code, why.into()),
    };
    d.approval = basis.approval.map(str::to_owned);
    d.exception = basis.exception.map(str::to_owned);
    policy_decision(state, request, model, &basis, d)
}

fn deny(mut d: Decision, code: ReasonCode, detail: String) -> Decision {
    d.reasons = vec![code];
    d.detail = detail;
    d
}

/// The request itself may be decided: a valid scope, a registered model
/// that is not revoked, a node enrolled for the scope.
fn admissible<'s>(state: &'s State, request: &DecisionRequest) -> Result<&'s ModelRecord, (ReasonCode, String)> {
    validate_scope(&request.scope).map_err(|e| (ReasonCode::InvalidRequest, e.to_string()))?;
    let model = state.models.get(&request.model).ok_or_else(|| {
        (
            ReasonCode::UnknownModel,
            format!("model {} is not registered", request.model),
        )
    })?;
    if let Some(r) = state.revocations.get(&request.model) {
        return Err((
            ReasonCode::Revoked,
            format!("revoked at log index {} ({})", r.index, r.ticket),
        ));
    }
    match state.node_serves(&request.node, &request.scope) {
        None => Err((
            ReasonCode::NodeNotEnrolled,
            format!("node {} is not enrolled", request.node),
        )),
        Some(false) => Err((
            ReasonCode::NodeScope,
            format!("node {} is not enrolled for {}", request.node, request.scope),
        )),
        Some(true) => Ok(model),
    }
}

/// The window around `now` in which nothing time-dependent about the
/// model's grants changes (a decision is cached only inside it).
fn window(state: &State, model: &str, now: u64) -> (u64, u64) {
    let (mut from, mut until) = (0, u64::MAX);
    for id in state.grants_of(model) {
        let bounds: &[u64] = match (state.approvals.get(id), state.exceptions.get(id)) {
            (Some(a), _) => &[a.valid_from, a.valid_until],
            (_, Some(x)) => &[x.expires],
            _ => &[],
        };
        for &b in bounds {
            if b <= now {
                from = from.max(b);
            } else {
                until = until.min(b);
            }
        }
    }
    (from, until)
}

/// The grant the call would be served under: among valid approvals for the
/// scope, the one lasting longest (then the lowest id, so the answer does
/// not depend on map order); else the exception with the lowest id; else
/// why there is none.
fn basis<'s>(state: &'s State, request: &DecisionRequest, now: u64) -> Result<Basis<'s>, (ReasonCode, &'static str)> {
    let mut basis: Option<Basis<'_>> = None;
    let (mut scoped, mut not_yet, mut any) = (false, false, false);
    for id in state.grants_of(&request.model) {
        let Some(a) = state.approvals.get(id) else { continue };
        any = true;
        if !a.scopes.iter().any(|p| pattern_matches(p, &request.scope)) {
            continue;
        }
        scoped = true;
        if now < a.valid_from {
            not_yet = true;
            continue;
        }
        if now >= a.valid_until {
            continue;
        }
        let better = match &basis {
            Some(Basis {
                approval: Some(cur), ..
            }) => {
                let cur_until = state.approvals.get(*cur).map_or(0, |c| c.valid_until);
                (a.valid_until, std::cmp::Reverse(&*a.id)) > (cur_until, std::cmp::Reverse(*cur))
            }
            _ => true,
        };
        if better {
            basis = Some(Basis {
                approval: Some(&a.id),
                exception: None,
                tier: a.risk_tier,
            });
        }
    }
    if basis.is_none() {
        for id in state.grants_of(&request.model) {
            let Some(x) = state.exceptions.get(id) else { continue };
            any = true;
            if !x.scopes.iter().any(|p| pattern_matches(p, &request.scope)) {
                continue;
            }
            scoped = true;
            if now < x.expires
                && basis
                    .as_ref()
                    .is_none_or(|b| b.exception.is_some_and(|cur| &*x.id < cur))
            {
                basis = Some(Basis {
                    approval: None,
                    exception: Some(&x.id),
                    tier: x.risk_tier,
                });
            }
        }
    }
    basis.ok_or(if scoped && not_yet {
        (
            ReasonCode::ApprovalNotYetValid,
            "the approvals for this scope are not valid yet",
        )
    } else if scoped {
        (
            ReasonCode::ApprovalExpired,
            "the approvals and exceptions for this scope have ended",
        )
    } else if any {
        (
            ReasonCode::ScopeNotApproved,
            "no approval or exception covers this scope",
        )
    } else {
        (ReasonCode::NoApproval, "the model has no approval")
    })
}

/// The policy set in force decides: a permit and no forbid allows; no
/// policy set, a forbid, no permit or any evaluation error denies.
fn policy_decision(
    state: &State,
    request: &DecisionRequest,
    model: &ModelRecord,
    basis: &Basis<'_>,
    mut d: Decision,
) -> Decision {
    let Some(policy) = &state.policy else {
        return deny(d, ReasonCode::NoPolicySet, "no policy set has been published".into());
    };
    let input = PolicyInput {
        principal: &request.principal,
        groups: &request.groups,
        attributes: &request.attributes,
        model: &model.digest,
        model_name: &model.name,
        model_version: &model.version,
        risk_tier: basis.tier.as_str(),
        scope: &request.scope,
        node: &request.node,
        via_exception: basis.exception.is_some(),
    };
    match evaluate(&policy.compiled, &input) {
        PolicyOutcome::Allow(ids) => {
            d.allow = true;
            d.policies = ids;
            d.reasons = vec![if basis.exception.is_some() {
                ReasonCode::Exception
            } else {
                ReasonCode::Approved
            }];
            d
        }
        PolicyOutcome::Deny(ids) => {
            let why = if ids.is_empty() {
                "no permit policy matched".to_owned()
            } else {
                format!("forbidden by {}", ids.join(", "))
            };
            d.policies = ids;
            deny(d, ReasonCode::PolicyDeny, why)
        }
        PolicyOutcome::Error(errors) => deny(d, ReasonCode::PolicyError, errors.join("; ")),
    }
}

/// A cache of decisions for one state. Looking up with a different state
/// empties it first; an entry is used only inside its validity window.
#[derive(Debug)]
pub struct DecisionCache {
    digest: Option<Hash>,
    map: HashMap<DecisionRequest, Arc<Decision>>,
    capacity: usize,
}

impl DecisionCache {
    /// A cache holding at most `capacity` decisions (emptied when full).
    pub fn new(capacity: usize) -> Self {
        Self {
            digest: None,
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The decision for `request` at `now` under `state`, from the cache when
    /// it holds one computed from this very state and still in its window.
    pub fn decide(&mut self, state: &State, request: &DecisionRequest, now: u64) -> Arc<Decision> {
        let digest = state.digest();
        if self.digest != Some(digest) {
            self.map.clear();
            self.digest = Some(digest);
        }
        if let Some(hit) = self.map.get(request) {
            if hit.valid_from <= now && now < hit.valid_until {
                return Arc::clone(hit);
            }
        }
        let fresh = Arc::new(decide(state, request, now));
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(request.clone(), Arc::clone(&fresh));
        fresh
    }

    /// Decisions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
