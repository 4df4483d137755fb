//! The per-model lifecycle of EG-MODEL-001 §9, as types: one type per step,
//! and each transition consumes the previous step and needs the evidence of
//! its check. A model reaches [`Serving`] only through all ten steps, in
//! order; an illegal transition does not compile:
//!
//! ```compile_fail
//! use modelgate_node::lifecycle::*;
//! # fn f(m: Lifecycle<Initializing>) {
//! // Initializing cannot skip to Serving.
//! let _ = m.serve();
//! # }
//! ```
//!
//! ```compile_fail
//! use modelgate_node::lifecycle::*;
//! # fn f(m: Lifecycle<Validating>) {
//! // Nor go back, nor reuse a consumed step.
//! let next = m.clone();
//! # }
//! ```
//!
//! Any failed check gives a (boxed) [`Lifecycle<Contained>`] with the named reason;
//! from there the only way back is a new lifecycle from the first step.
//! Every transition is recorded (step, time, detail) for the lineage log.

use std::path::{Path, PathBuf};

use modelgate_governance::{decide, Check, ContainmentReason, DecisionRequest, LifecycleStep, ReasonCode};

use crate::integrity::IntegrityOptions;
use crate::sync::View;

/// One recorded transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The step entered.
    pub step: &'static str,
    /// When (POSIX seconds, passed in).
    pub time: u64,
    /// What was checked.
    pub detail: String,
}

/// What the node serves: a model directory and its OMS signature.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// Name in the node's configuration.
    pub name: String,
    /// The model directory.
    pub dir: PathBuf,
    /// Its OMS bundle.
    pub bundle: PathBuf,
    /// The scope this node serves it in.
    pub scope: String,
    /// This node's id.
    pub node: String,
}

/// A model in lifecycle step `S`.
#[derive(Debug)]
pub struct Lifecycle<S> {
    spec: ModelSpec,
    transitions: Vec<Transition>,
    step: S,
}

macro_rules! steps {
    ($($name:ident),*) => {$(
        /// A lifecycle step (see the module docs).
        #[derive(Debug)]
        pub struct $name { _private: () }
    )*};
}
steps!(
    Initializing,
    Validating,
    CoordinationInspection,
    IntegrityVerification,
    EnforcementEvaluation,
    Approved,
    Persisting,
    AuditVerified
);

/// Signature verified: carries the model's root digest, the evidence the
/// later steps decide on (so the bundle is read and verified once).
#[derive(Debug)]
pub struct SignatureVerification {
    digest: String,
}

/// Telemetry validated; still carries the verified digest.
#[derive(Debug)]
pub struct TelemetryValidation {
    digest: String,
}

/// Facts established on the way, carried by the later steps.
#[derive(Debug)]
pub struct Serving {
    /// The model's root digest (hex).
    pub digest: String,
    /// The approval (or exception) it runs under.
    pub basis: String,
    /// The governance log size it was decided on.
    pub log_size: u64,
}

/// Contained: not serving, and why.
#[derive(Debug)]
pub struct Contained {
    /// The reason.
    pub reason: ContainmentReason,
    /// The EG-MODEL-001 §3 check that failed.
    pub check: Check,
    /// The step the lifecycle stopped at; `None` when a check failed while
    /// the model was Serving.
    pub step: Option<LifecycleStep>,
    /// When the governance decision refused it: the decision's reason
    /// (`Revoked`, `ApprovalExpired`, …), which callers are told.
    pub decision: Option<ReasonCode>,
    /// What failed.
    pub detail: String,
}

/// The check a failure at step `at` with `reason` fails. The first steps
/// check several things (Validating: the model path, the bundle, the
/// scope), so there the reason tells which; later steps check one thing.
fn check_for(at: LifecycleStep, reason: ContainmentReason) -> Check {
    match at {
        LifecycleStep::Validating | LifecycleStep::IntegrityVerification => Check::of_reason(reason),
        _ => at.check(),
    }
}

/// A check's failure: the step contains with this reason.
pub type Failure = (ContainmentReason, String);

/// The result of a transition: the next step, or containment.
pub type Next<S> = Result<Lifecycle<S>, Box<Lifecycle<Contained>>>;

impl<S> Lifecycle<S> {
    /// The transitions so far.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// The model.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn go<T>(mut self, step: T, name: &'static str, now: u64, detail: String) -> Lifecycle<T> {
        self.transitions.push(Transition {
            step: name,
            time: now,
            detail,
        });
        Lifecycle {
            spec: self.spec,
            transitions: self.transitions,
            step,
        }
    }

    fn check<T>(self, now: u64, at: LifecycleStep, step: T, result: Result<String, Failure>) -> Next<T> {
        match result {
            Ok(detail) => Ok(self.go(step, at.code(), now, detail)),
            Err(f) => Err(Box::new(self.fail(Some(at), f, now))),
        }
    }

    /// A step whose evidence is the outcome of a lineage-log operation;
    /// failing to record is an audit discontinuity.
    fn lineage_step<T>(
        self,
        outcome: Result<u64, impl std::fmt::Display>,
        now: u64,
        at: LifecycleStep,
        step: T,
        what: &str,
    ) -> Next<T> {
        let r = outcome
            .map(|n| format!("{what} {n}"))
            .map_err(|e| (ContainmentReason::AuditDiscontinuity, e.to_string()));
        self.check(now, at, step, r)
    }

    fn fail(self, at: Option<LifecycleStep>, (reason, detail): Failure, now: u64) -> Lifecycle<Contained> {
        let check = at.map_or(Check::of_reason(reason), |s| check_for(s, reason));
        self.go(
            Contained {
                reason,
                check,
                step: at,
                decision: None,
                detail: detail.clone(),
            },
            "Contained",
            now,
            detail,
        )
    }
}

impl Lifecycle<Initializing> {
    /// Begin (or begin again, after containment).
    pub fn new(spec: ModelSpec, now: u64) -> Self {
        let detail = format!("model {} from {}", spec.name, spec.dir.display());
        Lifecycle {
            spec,
            transitions: vec![Transition {
                step: "Initializing",
                time: now,
                detail,
            }],
            step: Initializing { _private: () },
        }
    }

    /// The configuration holds together: the directory and bundle exist, the scope parses.
    pub fn validate(self, now: u64) -> Next<Validating> {
        let s = &self.spec;
        let r = if !s.dir.is_dir() && !s.dir.is_file() {
            Err((
                ContainmentReason::UnauthorizedModification,
                format!("model path {} is missing", s.dir.display()),
            ))
        } else if !s.bundle.is_file() {
            Err((
                ContainmentReason::SignatureInvalid,
                format!("signature {} is missing", s.bundle.display()),
            ))
        } else {
            modelgate_governance::check_scope(&s.scope)
                .map(|()| "configuration valid".to_owned())
                .map_err(|e| (ContainmentReason::UnverifiableTransition, e.to_string()))
        };
        self.check(now, LifecycleStep::Validating, Validating { _private: () }, r)
    }
}

impl Lifecycle<Validating> {
    /// The node holds a verified, fresh view of the governance log; the view
    /// is handed on as the evidence the later steps use.
    pub fn inspect_coordination(
        self,
        view: Option<&View>,
        now: u64,
        max_staleness: u64,
    ) -> Result<(Lifecycle<CoordinationInspection>, &View), Box<Lifecycle<Contained>>> {
        let v = match view {
            None => {
                return Err(Box::new(self.fail(
                    Some(LifecycleStep::CoordinationInspection),
                    (
                        ContainmentReason::SyncInterrupted,
                        "no verified view of the governance log".to_owned(),
                    ),
                    now,
                )))
            }
            Some(v) => v,
        };
        let max_staleness = v.staleness_bound(max_staleness);
        let r = if now.saturating_sub(v.authority_time) > max_staleness {
            Err((
                ContainmentReason::SyncInterrupted,
                format!("view is {} s old", now - v.authority_time),
            ))
        } else {
            Ok(format!("view at size {}", v.checkpoint.size))
        };
        self.check(
            now,
            LifecycleStep::CoordinationInspection,
            CoordinationInspection { _private: () },
            r,
        )
        .map(|l| (l, v))
    }
}

pub(crate) fn read_bundle(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        (
            ContainmentReason::SignatureInvalid,
            format!("reading {}: {e}", path.display()),
        )
    })
}

impl Lifecycle<CoordinationInspection> {
    /// Every model file hashes to what the signed manifest says.
    pub fn verify_integrity(self, now: u64) -> Next<IntegrityVerification> {
        self.verify_integrity_with(now, IntegrityOptions::default())
    }

    /// [`Self::verify_integrity`] as `o` says: reading only the files the
    /// cache does not vouch for, sealing them with fs-verity first.
    pub fn verify_integrity_with(self, now: u64, o: IntegrityOptions<'_>) -> Next<IntegrityVerification> {
        let r = crate::integrity::verify(&self.spec, o).map(|v| v.detail());
        self.check(
            now,
            LifecycleStep::IntegrityVerification,
            IntegrityVerification { _private: () },
            r,
        )
    }
}

impl Lifecycle<IntegrityVerification> {
    /// The bundle is signed by a model signer of the trust root in force,
    /// and the model is registered in the governance state.
    pub fn verify_signature(self, view: &View, now: u64) -> Next<SignatureVerification> {
        match signature(&self.spec, view) {
            Ok(digest) => {
                let detail = format!("signed and registered as {digest}");
                let at = LifecycleStep::SignatureVerification;
                Ok(self.go(SignatureVerification { digest }, at.code(), now, detail))
            }
            Err(f) => Err(Box::new(self.fail(Some(LifecycleStep::SignatureVerification), f, now))),
        }
    }
}

fn signature(spec: &ModelSpec, view: &View) -> Result<String, Failure> {
    let bundle = read_bundle(&spec.bundle)?;
    let root = view
        .state
        .trust_root()
        .ok_or((ContainmentReason::SignatureInvalid, "no trust root".to_owned()))?;
    let (_, signature) = root.model_signers(&bundle).map_err(|last| {
        (
            ContainmentReason::SignatureInvalid,
            format!("no model signer's key or keyless identity verifies the bundle: {last}"),
        )
    })?;
    let digest = hex::encode(signature.manifest.root_digest());
    if !view.state.models.contains_key(&digest) {
        return Err((
            ContainmentReason::UnverifiableTransition,
            format!("model {digest} is not registered"),
        ));
    }
    Ok(digest)
}

impl Lifecycle<SignatureVerification> {
    /// The node can record what it does: its lineage log is open and
    /// verifies (the caller passes the outcome of opening and auditing it).
    pub fn validate_telemetry(
        self,
        lineage: Result<u64, impl std::fmt::Display>,
        now: u64,
    ) -> Next<TelemetryValidation> {
        let step = TelemetryValidation {
            digest: self.step.digest.clone(),
        };
        self.lineage_step(
            lineage,
            now,
            LifecycleStep::TelemetryValidation,
            step,
            "lineage log verified at size",
        )
    }
}

impl Lifecycle<TelemetryValidation> {
    /// The governance decision for this model, scope and node allows it.
    pub fn evaluate(
        self,
        view: &View,
        now: u64,
    ) -> Result<(Lifecycle<EnforcementEvaluation>, String, String), Box<Lifecycle<Contained>>> {
        let digest = self.step.digest.clone();
        let req = DecisionRequest {
            model: digest.clone(),
            scope: self.spec.scope.clone(),
            node: self.spec.node.clone(),
            principal: format!("node:{}", self.spec.node),
            groups: vec![],
            attributes: vec![],
        };
        let d = decide(&view.state, &req, now);
        let basis = d.approval.clone().or(d.exception.clone()).unwrap_or_default();
        if !d.allow {
            let at = LifecycleStep::EnforcementEvaluation;
            let detail = format!("not allowed: {:?} {}", d.reasons, d.detail);
            let mut c = self.fail(Some(at), (ContainmentReason::UnverifiableTransition, detail), now);
            c.step.decision = Some(d.reasons.first().copied().unwrap_or(ReasonCode::PolicyError));
            return Err(Box::new(c));
        }
        let r = Ok(format!("allowed ({:?}) under {basis}", d.reasons));
        self.check(
            now,
            LifecycleStep::EnforcementEvaluation,
            EnforcementEvaluation { _private: () },
            r,
        )
        .map(|l| (l, digest, basis))
    }
}

impl Lifecycle<EnforcementEvaluation> {
    /// Approved for serving.
    pub fn approve(self, now: u64) -> Lifecycle<Approved> {
        let at = LifecycleStep::Approved;
        self.go(Approved { _private: () }, at.code(), now, "all checks passed".into())
    }
}

impl Lifecycle<Approved> {
    /// The transitions are durably recorded (the caller appends them to the
    /// lineage log and passes the outcome).
    pub fn persist(self, durable: Result<u64, impl std::fmt::Display>, now: u64) -> Next<Persisting> {
        self.lineage_step(
            durable,
            now,
            LifecycleStep::Persisting,
            Persisting { _private: () },
            "recorded at lineage index",
        )
    }
}

impl Lifecycle<Persisting> {
    /// The record is in a lineage checkpoint that verifies.
    pub fn verify_audit(self, audited: Result<u64, impl std::fmt::Display>, now: u64) -> Next<AuditVerified> {
        let step = AuditVerified { _private: () };
        self.lineage_step(
            audited,
            now,
            LifecycleStep::AuditVerified,
            step,
            "lineage checkpoint verified at size",
        )
    }
}

impl Lifecycle<AuditVerified> {
    /// Serving: the only way here is through every step above.
    pub fn serve(self, digest: String, basis: String, log_size: u64, now: u64) -> Lifecycle<Serving> {
        self.go(
            Serving {
                digest,
                basis,
                log_size,
            },
            "Serving",
            now,
            "serving".into(),
        )
    }
}

impl Lifecycle<Serving> {
    /// What it serves under.
    pub fn serving(&self) -> &Serving {
        &self.step
    }

    /// A check failed while serving: contain.
    pub fn contain(self, reason: ContainmentReason, detail: String, now: u64) -> Lifecycle<Contained> {
        self.fail(None, (reason, detail), now)
    }
}

impl Lifecycle<Contained> {
    /// Why.
    pub fn contained(&self) -> &Contained {
        &self.step
    }

    /// Recovery goes through the whole lifecycle again, keeping the record.
    pub fn restart(self, now: u64) -> Lifecycle<Initializing> {
        self.go(
            Initializing { _private: () },
            "Initializing",
            now,
            "restart after containment".into(),
        )
    }
}
