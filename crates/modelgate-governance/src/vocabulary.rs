//! The seed's vocabulary as types: the eight validation checks of
//! EG-MODEL-001 §3 and the ten lifecycle steps of §9. (The eight
//! containment reasons of §4 are [`crate::ContainmentReason`].)
//!
//! Each has a stable code, its variant name (`ModelScopeContinuity`,
//! `IntegrityVerification`): that is what denials, lineage records, metric
//! labels, containment reports and status answers carry, and it never
//! changes once released. The numbers are the seed's own numbering.

use serde::{Deserialize, Serialize};

use crate::decide::ReasonCode;
use crate::entry::ContainmentReason;

/// The eight validation checks of EG-MODEL-001 §3. Every denial and every
/// containment names the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Check {
    /// §3.1: the model went through its whole lifecycle and is Serving on
    /// this node; a request names a model the node runs.
    ModelRuntimeContinuity,
    /// §3.2: the node holds a verified, fresh view of the governance log
    /// (policies, approvals, revocations) from the authority.
    GovernancePolicySynchronization,
    /// §3.3: the model's files hash to what its signed manifest says, and
    /// have not changed since.
    RuntimeIntegrityVerification,
    /// §3.4: the model is approved (or excepted) and not revoked for this
    /// scope, node and caller, and the Cedar policies in force permit it.
    ModelScopeContinuity,
    /// §3.5: signatures verify: the model's OMS bundle by a signer of the
    /// trust root, the authority's checkpoint by the log key.
    CryptographicVerificationValidation,
    /// §3.6: the governance records this node keeps are durable and audit
    /// clean (the trusted checkpoint, lifecycle records).
    ImmutableAuditSynchronization,
    /// §3.7: the node's view agrees with the authority's and with its own
    /// past: no fork, no rollback, the same state digest.
    DistributedRuntimeConsistency,
    /// §3.8: every call has a durable lineage record, and the lineage log is
    /// anchored in the governance log within the trust root's bound.
    ExecutionLineageContinuity,
}

impl Check {
    /// Every check, in the seed's order.
    pub const ALL: [Check; 8] = [
        Check::ModelRuntimeContinuity,
        Check::GovernancePolicySynchronization,
        Check::RuntimeIntegrityVerification,
        Check::ModelScopeContinuity,
        Check::CryptographicVerificationValidation,
        Check::ImmutableAuditSynchronization,
        Check::DistributedRuntimeConsistency,
        Check::ExecutionLineageContinuity,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Check::ModelRuntimeContinuity => "ModelRuntimeContinuity",
            Check::GovernancePolicySynchronization => "GovernancePolicySynchronization",
            Check::RuntimeIntegrityVerification => "RuntimeIntegrityVerification",
            Check::ModelScopeContinuity => "ModelScopeContinuity",
            Check::CryptographicVerificationValidation => "CryptographicVerificationValidation",
            Check::ImmutableAuditSynchronization => "ImmutableAuditSynchronization",
            Check::DistributedRuntimeConsistency => "DistributedRuntimeConsistency",
            Check::ExecutionLineageContinuity => "ExecutionLineageContinuity",
        }
    }

    /// Its number in EG-MODEL-001 §3 (1–8).
    pub fn number(self) -> u8 {
        match self {
            Check::ModelRuntimeContinuity => 1,
            Check::GovernancePolicySynchronization => 2,
            Check::RuntimeIntegrityVerification => 3,
            Check::ModelScopeContinuity => 4,
            Check::CryptographicVerificationValidation => 5,
            Check::ImmutableAuditSynchronization => 6,
            Check::DistributedRuntimeConsistency => 7,
            Check::ExecutionLineageContinuity => 8,
        }
    }

    /// The check a containment reason comes from when nothing more specific
    /// is known (a failed sync, a failure while serving). The lifecycle and
    /// the gateway name their check directly.
    pub fn of_reason(reason: ContainmentReason) -> Check {
        match reason {
            ContainmentReason::SyncInterrupted => Check::GovernancePolicySynchronization,
            ContainmentReason::GovernanceMismatch => Check::GovernancePolicySynchronization,
            ContainmentReason::SignatureInvalid => Check::CryptographicVerificationValidation,
            ContainmentReason::AuditDiscontinuity => Check::ImmutableAuditSynchronization,
            ContainmentReason::CoordinationInconsistent => Check::DistributedRuntimeConsistency,
            ContainmentReason::UnauthorizedModification => Check::RuntimeIntegrityVerification,
            ContainmentReason::StateDivergence => Check::DistributedRuntimeConsistency,
            ContainmentReason::UnverifiableTransition => Check::ModelScopeContinuity,
        }
    }

    /// The check a governance decision's refusal fails. Every refusal of
    /// [`crate::decide`] is about the model in this scope, node and caller,
    /// except a malformed request (the call names no valid model or scope).
    pub fn of_decision(code: ReasonCode) -> Check {
        match code {
            ReasonCode::InvalidRequest | ReasonCode::UnknownModel => Check::ModelRuntimeContinuity,
            ReasonCode::NoPolicySet => Check::GovernancePolicySynchronization,
            ReasonCode::Approved
            | ReasonCode::Exception
            | ReasonCode::Revoked
            | ReasonCode::NodeNotEnrolled
            | ReasonCode::NodeScope
            | ReasonCode::NoApproval
            | ReasonCode::ApprovalNotYetValid
            | ReasonCode::ApprovalExpired
            | ReasonCode::ScopeNotApproved
            | ReasonCode::PolicyDeny
            | ReasonCode::PolicyError => Check::ModelScopeContinuity,
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The ten lifecycle steps of EG-MODEL-001 §9, in order. A model is Serving
/// only after all ten; a lifecycle that fails stops at one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LifecycleStep {
    /// §9.1 Model Initialization.
    Initializing,
    /// §9.2 Model Validation.
    Validating,
    /// §9.3 Governance Coordination Inspection.
    CoordinationInspection,
    /// §9.4 Runtime Integrity Verification.
    IntegrityVerification,
    /// §9.5 Cryptographic Verification Validation.
    SignatureVerification,
    /// §9.6 Telemetry Synchronization Validation.
    TelemetryValidation,
    /// §9.7 Fail-Closed Enforcement Evaluation.
    EnforcementEvaluation,
    /// §9.8 Runtime Model Approval.
    Approved,
    /// §9.9 Immutable Synchronization Persistence.
    Persisting,
    /// §9.10 Audit Continuity Verification.
    AuditVerified,
}

impl LifecycleStep {
    /// Every step, in order.
    pub const ALL: [LifecycleStep; 10] = [
        LifecycleStep::Initializing,
        LifecycleStep::Validating,
        LifecycleStep::CoordinationInspection,
        LifecycleStep::IntegrityVerification,
        LifecycleStep::SignatureVerification,
        LifecycleStep::TelemetryValidation,
        LifecycleStep::EnforcementEvaluation,
        LifecycleStep::Approved,
        LifecycleStep::Persisting,
        LifecycleStep::AuditVerified,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            LifecycleStep::Initializing => "Initializing",
            LifecycleStep::Validating => "Validating",
            LifecycleStep::CoordinationInspection => "CoordinationInspection",
            LifecycleStep::IntegrityVerification => "IntegrityVerification",
            LifecycleStep::SignatureVerification => "SignatureVerification",
            LifecycleStep::TelemetryValidation => "TelemetryValidation",
            LifecycleStep::EnforcementEvaluation => "EnforcementEvaluation",
            LifecycleStep::Approved => "Approved",
            LifecycleStep::Persisting => "Persisting",
            LifecycleStep::AuditVerified => "AuditVerified",
        }
    }

    /// Its number in EG-MODEL-001 §9 (1–10).
    pub fn number(self) -> u8 {
        // The declaration order is the seed's order.
        Self::ALL.iter().position(|s| *s == self).map_or(0, |i| i as u8 + 1)
    }

    /// The check a failure at this step fails, unless the step knows better
    /// (a missing bundle at Validating is a signature problem, say).
    pub fn check(self) -> Check {
        match self {
            LifecycleStep::Initializing | LifecycleStep::Validating | LifecycleStep::Approved => {
                Check::ModelRuntimeContinuity
            }
            LifecycleStep::CoordinationInspection => Check::GovernancePolicySynchronization,
            LifecycleStep::IntegrityVerification => Check::RuntimeIntegrityVerification,
            LifecycleStep::SignatureVerification => Check::CryptographicVerificationValidation,
            LifecycleStep::TelemetryValidation => Check::ExecutionLineageContinuity,
            LifecycleStep::EnforcementEvaluation => Check::ModelScopeContinuity,
            LifecycleStep::Persisting | LifecycleStep::AuditVerified => Check::ImmutableAuditSynchronization,
        }
    }
}

impl std::fmt::Display for LifecycleStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_serialised_names_and_numbers_follow_the_seed() {
        for (i, c) in Check::ALL.iter().enumerate() {
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::json!(c.code())));
            assert_eq!(usize::from(c.number()), i + 1);
        }
        for (i, s) in LifecycleStep::ALL.iter().enumerate() {
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::json!(s.code())));
            assert_eq!(usize::from(s.number()), i + 1);
        }
    }
}
