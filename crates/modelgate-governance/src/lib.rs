//! The governance model of modelgate: who may do what (the trust root), the
//! signed entries of the governance log, the deterministic state folded from
//! them, and the decision whether a model may run.
//!
//! Pure: no I/O, no clock (every time is passed in), no randomness. Every
//! node that replays the same log reaches the same [`State`], the same
//! [`State::digest`] and the same [`decide`] answers.
//!
//! What it guarantees:
//!
//! - **Signed, canonical entries.** Each entry is a DSSE envelope (Ed25519)
//!   around an RFC 8785 canonical-JSON payload with an explicit `type` and
//!   `version`; the envelope is canonical too, so an entry has exactly one
//!   encoding and the log stores exactly the signed bytes. Unknown types,
//!   versions and fields are refused, never skipped.
//! - **Thresholds and separation of duties.** Every action needs a threshold
//!   of distinct principals holding the right role (per risk tier for
//!   approvals); no signer of a model may approve it or grant it an
//!   exception. Trust-root version N+1 needs a threshold of version N's root
//!   keys and of its own; rollbacks and skips are refused.
//! - **A fold that stops, not skips.** [`fold`] applies entries in order; an
//!   entry breaking a rule stops it with [`FoldError`] naming the index and
//!   the [`Rule`]. Any prefix of the log gives the state at that prefix.
//! - **Fail-closed decisions.** [`decide`] allows only with a valid approval
//!   (or exception) for the scope, no revocation, an enrolled node serving
//!   the scope, and a Cedar permit with no forbid *and no evaluation error*:
//!   Cedar skips erroring policies, we deny. Each outcome has its own
//!   [`ReasonCode`].
//! - **A cache that cannot go stale.** [`DecisionCache`] keys on the state
//!   digest and serves an entry only inside the time window where the answer
//!   holds.
//!
//! The scope grammar is documented in [`scope`]; the Cedar schema in
//! [`policy::SCHEMA`].

mod canonical;
mod decide;
mod digest;
mod entry;
mod envelope;
mod error;
pub mod heartbeat;
pub mod policy;
mod rules;
pub mod scope;
mod slice;
mod state;
pub mod time;
pub mod trust_edit;
mod trust_root;
mod vocabulary;

pub use canonical::{parse_canonical, to_canonical, CanonicalError, MAX_SAFE_INTEGER};
pub use decide::{decide, Decision, DecisionCache, DecisionRequest, ReasonCode};
pub use entry::{
    ApprovalEntry, Containment, ContainmentReason, ContainmentReportEntry, EntryPayload, ExceptionEntry, ModelEntry,
    NodeAnchorEntry, NodeEnrollmentEntry, Payload, PolicySetEntry, RevocationEntry,
};
pub use envelope::{key_id, pae, Envelope, MAX_ENVELOPE_BYTES, PAYLOAD_TYPE};
pub use error::{EntryError, FoldError, GovernanceError, Rule};
/// The signing seam every governance signature goes through.
pub use modelgate_signer::Signer;
pub use state::{
    check_scope, check_text, fold, AnchorRecord, ApprovalRecord, Checked, ExceptionRecord, ModelRecord, NodeRecord,
    PolicyRecord, ReportRecord, RevocationRecord, State, TrustRootRecord, TEXT_BYTES_MAX,
};
pub use trust_root::{
    AuthorityKeys, Freshness, KeylessIdentity, ModelSignature, Principal, RiskTier, Role, Thresholds, TierThresholds,
    TrustRoot, TrustRootDoc,
};
pub use vocabulary::{Check, LifecycleStep};
