//! Errors: an entry that cannot be read, and a fold that stopped at an entry
//! breaking a named rule.

/// Why an entry could not be read or verified.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// Not a well-formed envelope or payload.
    #[error("malformed entry: {0}")]
    Malformed(String),
    /// A payload type this modelgate does not know (never skipped).
    #[error("unknown entry type {0:?}")]
    UnknownType(String),
    /// A known type in a version this modelgate does not know.
    #[error("entry type {kind:?} version {version} is not supported (this modelgate reads version {accepted})")]
    UnsupportedVersion {
        /// The entry type.
        kind: String,
        /// The version found.
        version: u64,
        /// The version accepted for this type.
        accepted: u64,
    },
    /// A signature by a known key that does not verify.
    #[error("signature by key {0} does not verify")]
    BadSignature(String),
    /// A key that could not sign (not Ed25519, or a token that failed):
    /// nothing was signed.
    #[error("signing: {0}")]
    Signing(String),
}

/// The crate's error: every way a governance operation can fail, each
/// variant naming what kind of input was wrong (the detail says how).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GovernanceError {
    /// An entry could not be read or verified.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The fold stopped at an entry breaking a rule.
    #[error(transparent)]
    Fold(#[from] FoldError),
    /// Bytes that are not canonical JSON (RFC 8785).
    #[error("not canonical JSON: {0}")]
    NotCanonical(String),
    /// A scope or scope pattern outside the grammar.
    #[error("{0}")]
    Scope(String),
    /// Text with characters governance documents refuse.
    #[error("{0}")]
    Text(String),
    /// A Cedar policy set that does not compile against the schema.
    #[error("{0}")]
    Policy(String),
    /// A trust-root document inconsistent in itself.
    #[error("{0}")]
    TrustRoot(String),
    /// An edit of a trust-root draft that does not apply to it.
    #[error("{0}")]
    Edit(String),
    /// A heartbeat that does not verify.
    #[error("{0}")]
    Heartbeat(String),
    /// A state snapshot that cannot be written or restored.
    #[error("{0}")]
    Snapshot(String),
}

/// The rules the fold enforces. Each has a stable kebab-case code that
/// appears in errors, logs and the authority's refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The entry could not be read (see the detail).
    Entry,
    /// The first entry must be the pinned trust root.
    Genesis,
    /// A trust root needs a threshold of the old and of the new root keys.
    TrustRootThreshold,
    /// Trust root versions only go up by one.
    TrustRootVersion,
    /// A trust root document that is inconsistent in itself.
    TrustRootInvalid,
    /// The entry's signers do not meet the threshold for its action.
    Threshold,
    /// A model's OMS bundle must verify with a model signer's key.
    ModelSignature,
    /// A model digest may be registered once.
    ModelDuplicate,
    /// The entry names a model that is not registered.
    ModelUnknown,
    /// The entry grants something to a revoked model.
    ModelRevoked,
    /// The same approval or exception is already in the log.
    Duplicate,
    /// An approver may not approve a model they signed.
    SeparationOfDuties,
    /// valid-from must be before valid-until (and expiries must be set).
    TimeWindow,
    /// Tickets are mandatory where the rule says so.
    Ticket,
    /// Scopes must follow the grammar.
    ScopeGrammar,
    /// The policy set must parse and validate against the strict schema.
    PolicyInvalid,
    /// A node may be enrolled once.
    NodeDuplicate,
    /// The entry names a node that is not enrolled.
    NodeUnknown,
    /// A node's anchor must be signed by its key and consistent with its last one.
    AnchorInvalid,
    /// The entry's type or version is not known.
    UnknownEntry,
    /// The entry repeats or steps back: a node's report sequence or anchored
    /// size that does not move forward, or a policy set that does not
    /// replace the one in force.
    Replay,
    /// Free text holding control characters, bidirectional overrides, or
    /// nothing visible.
    Text,
}

impl Rule {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Rule::Entry => "entry",
            Rule::Genesis => "genesis",
            Rule::TrustRootThreshold => "trust-root-threshold",
            Rule::TrustRootVersion => "trust-root-version",
            Rule::TrustRootInvalid => "trust-root-invalid",
            Rule::Threshold => "threshold",
            Rule::ModelSignature => "model-signature",
            Rule::ModelDuplicate => "model-duplicate",
            Rule::ModelUnknown => "model-unknown",
            Rule::ModelRevoked => "model-revoked",
            Rule::Duplicate => "duplicate",
            Rule::SeparationOfDuties => "separation-of-duties",
            Rule::TimeWindow => "time-window",
            Rule::Ticket => "ticket",
            Rule::ScopeGrammar => "scope-grammar",
            Rule::PolicyInvalid => "policy-invalid",
            Rule::NodeDuplicate => "node-duplicate",
            Rule::NodeUnknown => "node-unknown",
            Rule::AnchorInvalid => "anchor-invalid",
            Rule::UnknownEntry => "unknown-entry",
            Rule::Replay => "replay",
            Rule::Text => "text",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// An entry the fold refused: where, which rule, and why.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("entry {index}: rule {rule}: {detail}")]
pub struct FoldError {
    /// The entry's index in the log.
    pub index: u64,
    /// The rule it breaks.
    pub rule: Rule,
    /// What exactly is wrong.
    pub detail: String,
}

impl FoldError {
    pub(crate) fn new(index: u64, rule: Rule, detail: impl Into<String>) -> Self {
        Self {
            index,
            rule,
            detail: detail.into(),
        }
    }
}

impl From<(u64, EntryError)> for FoldError {
    fn from((index, e): (u64, EntryError)) -> Self {
        let rule = match e {
            EntryError::UnknownType(_) | EntryError::UnsupportedVersion { .. } => Rule::UnknownEntry,
            _ => Rule::Entry,
        };
        FoldError::new(index, rule, e.to_string())
    }
}
