//! The governance entry types (DESIGN.md §4), each a canonical-JSON payload
//! with an explicit `type` and `version`. Unknown types, unknown versions and
//! unknown fields are errors: an entry this modelgate cannot fully
//! understand is never skipped.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::to_canonical;
use crate::envelope::Envelope;
use crate::error::EntryError;
use crate::trust_root::{RiskTier, TrustRootDoc};
use crate::vocabulary::{Check, LifecycleStep};

/// Registration of a signed model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Always `model`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// Model name, e.g. `credit-scorer`.
    pub model_name: String,
    /// Model version, e.g. `2.3.0`.
    pub model_version: String,
    /// The OMS bundle (Sigstore bundle v0.3 JSON), base64, byte for byte.
    pub bundle: String,
}

/// Approval of a model for scopes and a time window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalEntry {
    /// Always `approval`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// The model's root digest (64 hex digits).
    pub model: String,
    /// Scope patterns granted.
    pub scopes: Vec<String>,
    /// Start of validity, POSIX seconds, inclusive.
    pub valid_from: u64,
    /// End of validity, POSIX seconds, exclusive.
    pub valid_until: u64,
    /// Risk tier, which sets the approval threshold.
    pub risk_tier: RiskTier,
    /// Change or risk ticket reference.
    pub ticket: String,
}

/// Revocation of a model: beats every approval and exception from its index on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationEntry {
    /// Always `revocation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// The model's root digest.
    pub model: String,
    /// Why.
    pub reason: String,
    /// Ticket reference.
    pub ticket: String,
}

/// A time-bounded exception: lets a model run in scopes without an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionEntry {
    /// Always `exception`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// The model's root digest.
    pub model: String,
    /// Scope patterns.
    pub scopes: Vec<String>,
    /// Expiry, POSIX seconds (exclusive); mandatory.
    pub expires: u64,
    /// Risk tier the model runs under meanwhile.
    pub risk_tier: RiskTier,
    /// Ticket reference; mandatory.
    pub ticket: String,
    /// Why.
    pub reason: String,
}

/// A Cedar policy set, replacing the one in force.
///
/// Version 2 names the set it replaces, so that an older set, signed once,
/// cannot be put back in force by submitting it again: the fold accepts a
/// policy set only when `replaces` is the id of the set in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetEntry {
    /// Always `policy-set`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (2).
    pub version: u64,
    /// A name for humans.
    pub name: String,
    /// The Cedar policies.
    pub policies: String,
    /// The id (hex SHA-256 of the payload) of the policy set in force that
    /// this one replaces; empty for the log's first policy set.
    pub replaces: String,
}

/// Enrollment of a runtime node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEnrollmentEntry {
    /// Always `node-enrollment`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// Node id.
    pub node: String,
    /// The node's Ed25519 note key (C2SP vkey); it signs the node's lineage
    /// checkpoints, anchors and reports. Its name is the lineage log's origin.
    pub key: String,
    /// Scope patterns the node may serve.
    pub scopes: Vec<String>,
}

/// A node's lineage checkpoint, anchored in the governance log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAnchorEntry {
    /// Always `node-anchor`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// Node id.
    pub node: String,
    /// The signed lineage checkpoint note.
    pub checkpoint: String,
    /// Consistency proof (base64 hashes) from the node's previous anchor.
    pub consistency: Vec<String>,
}

/// The eight containment reasons of EG-MODEL-001 §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ContainmentReason {
    /// Model synchronization interruption.
    SyncInterrupted,
    /// Runtime governance mismatch.
    GovernanceMismatch,
    /// Cryptographic verification failure.
    SignatureInvalid,
    /// Immutable audit discontinuity.
    AuditDiscontinuity,
    /// Distributed coordination inconsistency.
    CoordinationInconsistent,
    /// Unauthorized model modification.
    UnauthorizedModification,
    /// Runtime state divergence.
    StateDivergence,
    /// Unverifiable model transition.
    UnverifiableTransition,
}

impl ContainmentReason {
    /// The stable code (the variant's name), as denials and metrics show it.
    pub fn code(self) -> &'static str {
        match self {
            ContainmentReason::SyncInterrupted => "SyncInterrupted",
            ContainmentReason::GovernanceMismatch => "GovernanceMismatch",
            ContainmentReason::SignatureInvalid => "SignatureInvalid",
            ContainmentReason::AuditDiscontinuity => "AuditDiscontinuity",
            ContainmentReason::CoordinationInconsistent => "CoordinationInconsistent",
            ContainmentReason::UnauthorizedModification => "UnauthorizedModification",
            ContainmentReason::StateDivergence => "StateDivergence",
            ContainmentReason::UnverifiableTransition => "UnverifiableTransition",
        }
    }
}

/// A node's report that it contained (or recovered).
///
/// It carries the node's report sequence number: the fold accepts a report
/// only with a sequence above the node's previous one, so a report fetched
/// from the log and posted again (a replayed "recovered" after a newer
/// containment) is refused. Version 3 also names the EG-MODEL-001 §3 check
/// that failed and the lifecycle step the model stopped at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentReportEntry {
    /// Always `containment-report`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (3).
    pub version: u64,
    /// Node id.
    pub node: String,
    /// The node's report sequence number: strictly above its previous
    /// report's (gaps are allowed: a signed report may never reach the log).
    pub sequence: u64,
    /// Models concerned (root digests); empty for node-wide containment.
    pub models: Vec<String>,
    /// The reason.
    pub reason: ContainmentReason,
    /// The check that failed (for a recovery: the one that had failed).
    pub check: Check,
    /// The lifecycle step the model stopped at; null when the check failed
    /// while it was Serving, or for the whole node (a failed sync).
    pub step: Option<LifecycleStep>,
    /// What the node saw.
    pub detail: String,
    /// False when containing, true when reporting recovery.
    pub recovered: bool,
    /// When, POSIX seconds (the node's clock; informational).
    pub time: u64,
}

/// A decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `trust-root` v1.
    TrustRoot(TrustRootDoc),
    /// `model` v1.
    Model(ModelEntry),
    /// `approval` v1.
    Approval(ApprovalEntry),
    /// `revocation` v1.
    Revocation(RevocationEntry),
    /// `exception` v1.
    Exception(ExceptionEntry),
    /// `policy-set` v2.
    PolicySet(PolicySetEntry),
    /// `node-enrollment` v1.
    NodeEnrollment(NodeEnrollmentEntry),
    /// `node-anchor` v1.
    NodeAnchor(NodeAnchorEntry),
    /// `containment-report` v3.
    ContainmentReport(ContainmentReportEntry),
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, EntryError> {
    serde_json::from_value(value).map_err(|e| EntryError::Malformed(e.to_string()))
}

impl Payload {
    /// Decode a (canonical) payload by its `type` and `version`.
    pub fn decode(value: Value) -> Result<Self, EntryError> {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| EntryError::Malformed("payload has no string \"type\"".into()))?
            .to_owned();
        let version = value
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| EntryError::Malformed("payload has no integer \"version\"".into()))?;
        let known = matches!(
            kind.as_str(),
            "trust-root"
                | "model"
                | "approval"
                | "revocation"
                | "exception"
                | "policy-set"
                | "node-enrollment"
                | "node-anchor"
                | "containment-report"
        );
        if !known {
            return Err(EntryError::UnknownType(kind));
        }
        let accepted = Self::version_of(&kind);
        if version != accepted {
            return Err(EntryError::UnsupportedVersion {
                kind,
                version,
                accepted,
            });
        }
        Ok(match kind.as_str() {
            "trust-root" => Payload::TrustRoot(typed(value)?),
            "model" => Payload::Model(typed(value)?),
            "approval" => Payload::Approval(typed(value)?),
            "revocation" => Payload::Revocation(typed(value)?),
            "exception" => Payload::Exception(typed(value)?),
            "policy-set" => Payload::PolicySet(typed(value)?),
            "node-enrollment" => Payload::NodeEnrollment(typed(value)?),
            "node-anchor" => Payload::NodeAnchor(typed(value)?),
            _ => Payload::ContainmentReport(typed(value)?),
        })
    }

    /// The one format version of each entry type this modelgate accepts.
    /// `policy-set` is at version 2 (version 1 could be replayed, see
    /// [`PolicySetEntry`]); `containment-report` at version 3 (version 1
    /// could be replayed, version 2 did not name the check that failed).
    pub fn version_of(kind: &str) -> u64 {
        match kind {
            "policy-set" => 2,
            "containment-report" => 3,
            _ => 1,
        }
    }

    /// The entry type's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::TrustRoot(_) => "trust-root",
            Payload::Model(_) => "model",
            Payload::Approval(_) => "approval",
            Payload::Revocation(_) => "revocation",
            Payload::Exception(_) => "exception",
            Payload::PolicySet(_) => "policy-set",
            Payload::NodeEnrollment(_) => "node-enrollment",
            Payload::NodeAnchor(_) => "node-anchor",
            Payload::ContainmentReport(_) => "containment-report",
        }
    }
}

/// A payload type of the governance log, built by its constructor (which
/// sets `type` and `version`) and signed as canonical JSON.
pub trait EntryPayload: Serialize {
    /// The entry type (`approval`, …).
    const KIND: &'static str;

    /// The payload's canonical bytes (RFC 8785), what is signed.
    fn canonical(&self) -> Result<Vec<u8>, EntryError> {
        let value = serde_json::to_value(self).map_err(|e| EntryError::Malformed(e.to_string()))?;
        to_canonical(&value).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// The signed entry (a DSSE envelope) with each of `keys`' signatures.
    fn sign(&self, keys: &[&dyn modelgate_signer::Signer]) -> Result<Vec<u8>, EntryError> {
        Envelope::sign(&self.canonical()?, keys)
    }
}

macro_rules! entry_payload {
    ($($ty:ident => $kind:literal),* $(,)?) => {$(
        impl EntryPayload for $ty {
            const KIND: &'static str = $kind;
        }
    )*};
}
entry_payload!(
    ModelEntry => "model",
    ApprovalEntry => "approval",
    RevocationEntry => "revocation",
    ExceptionEntry => "exception",
    PolicySetEntry => "policy-set",
    NodeEnrollmentEntry => "node-enrollment",
    NodeAnchorEntry => "node-anchor",
    ContainmentReportEntry => "containment-report",
);

fn kind_version<T: EntryPayload>() -> (String, u64) {
    (T::KIND.to_owned(), Payload::version_of(T::KIND))
}

impl ModelEntry {
    /// Register a model: its name, version and OMS bundle (the bytes, base64-encoded here).
    pub fn new(model_name: &str, model_version: &str, bundle: &[u8]) -> Self {
        use base64::Engine as _;
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            model_name: model_name.to_owned(),
            model_version: model_version.to_owned(),
            bundle: base64::engine::general_purpose::STANDARD.encode(bundle),
        }
    }
}

impl ApprovalEntry {
    /// Approve `model` (root digest) for `scopes` in `[valid_from, valid_until)`.
    pub fn new(
        model: &str,
        scopes: Vec<String>,
        valid_from: u64,
        valid_until: u64,
        risk_tier: RiskTier,
        ticket: &str,
    ) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            model: model.to_owned(),
            scopes,
            valid_from,
            valid_until,
            risk_tier,
            ticket: ticket.to_owned(),
        }
    }
}

impl RevocationEntry {
    /// Revoke `model` (root digest).
    pub fn new(model: &str, reason: &str, ticket: &str) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            model: model.to_owned(),
            reason: reason.to_owned(),
            ticket: ticket.to_owned(),
        }
    }
}

impl ExceptionEntry {
    /// Let `model` run in `scopes` without an approval until `expires`.
    pub fn new(
        model: &str,
        scopes: Vec<String>,
        expires: u64,
        risk_tier: RiskTier,
        ticket: &str,
        reason: &str,
    ) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            model: model.to_owned(),
            scopes,
            expires,
            risk_tier,
            ticket: ticket.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

impl PolicySetEntry {
    /// A Cedar policy set replacing the set in force (`replaces` its id, "" for the first).
    pub fn new(name: &str, policies: &str, replaces: &str) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            name: name.to_owned(),
            policies: policies.to_owned(),
            replaces: replaces.to_owned(),
        }
    }
}

impl NodeEnrollmentEntry {
    /// Enroll `node` with its note verifier key for `scopes`.
    pub fn new(node: &str, key: &str, scopes: Vec<String>) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            node: node.to_owned(),
            key: key.to_owned(),
            scopes,
        }
    }
}

impl NodeAnchorEntry {
    /// Anchor `node`'s signed lineage checkpoint, with the consistency proof
    /// (base64 hashes) from its previous anchor.
    pub fn new(node: &str, checkpoint: &str, consistency: Vec<String>) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            node: node.to_owned(),
            checkpoint: checkpoint.to_owned(),
            consistency,
        }
    }
}

/// What a containment report says, before it is numbered and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containment {
    /// Models concerned (root digests); empty for node-wide containment.
    pub models: Vec<String>,
    /// The reason.
    pub reason: ContainmentReason,
    /// The check that failed.
    pub check: Check,
    /// The lifecycle step the model stopped at, if it stopped in one.
    pub step: Option<LifecycleStep>,
    /// What the node saw.
    pub detail: String,
    /// A recovery rather than a containment.
    pub recovered: bool,
}

impl ContainmentReportEntry {
    /// `node`'s report number `sequence`, at node time `time`.
    pub fn new(node: &str, sequence: u64, c: Containment, time: u64) -> Self {
        let (kind, version) = kind_version::<Self>();
        Self {
            kind,
            version,
            node: node.to_owned(),
            sequence,
            models: c.models,
            reason: c.reason,
            check: c.check,
            step: c.step,
            detail: c.detail,
            recovered: c.recovered,
            time,
        }
    }
}
