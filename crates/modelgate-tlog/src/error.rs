//! One error type for everything that parses or verifies. Variants split into
//! "the input is malformed" and "the input is well-formed but does not
//! verify", because an auditor must be able to tell a broken file from a log
//! that lied (the CLI maps them to exit codes 2 and 1).

use crate::proof::ProofError;

/// Why a note, key, checkpoint, proof, tile or bundle was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A signed note that breaks the C2SP signed-note grammar.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A verifier or signer key string that is not valid.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// A note text that does not parse as a checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A tlog-proof text that does not parse.
    #[error("malformed proof: {0}")]
    MalformedProof(String),
    /// A tile path that is not the canonical C2SP encoding.
    #[error("malformed tile path: {0}")]
    MalformedTilePath(String),
    /// Tile or entry-bundle bytes that do not have the expected shape.
    #[error("malformed tile data: {0}")]
    MalformedTile(String),
    /// The key could not sign (a token that is gone, a PIN refused):
    /// nothing was signed.
    #[error("signing: {0}")]
    Signing(String),
    /// A policy that can never be satisfied, or a key used for the wrong job.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No signature on the note came from a key the verifier knows.
    #[error("note has no signature from a known key")]
    UnverifiedNote,
    /// A signature that claims a known key (same name and id) and fails.
    #[error("signature by {name} (key id {key_id:08x}) does not verify")]
    BadSignature {
        /// Key name on the signature line.
        name: String,
        /// Key id on the signature line.
        key_id: u32,
    },
    /// A known key signed the same note twice.
    #[error("key {name} (key id {key_id:08x}) signed the note more than once")]
    DuplicateSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// The checkpoint is for another log.
    #[error("checkpoint origin is {got:?}, expected {want:?}")]
    WrongOrigin {
        /// Origin in the checkpoint.
        got: String,
        /// Origin the verifier expects.
        want: String,
    },
    /// The checkpoint lacks the log's own signature.
    #[error("checkpoint is not signed by the log key {0}")]
    MissingLogSignature(String),
    /// Fewer witnesses cosigned than the policy requires.
    #[error("witness quorum not met: {got} of the required {want} witnesses cosigned (signed: {signed:?})")]
    QuorumNotMet {
        /// Distinct witnesses whose cosignature verified.
        got: usize,
        /// Quorum required.
        want: usize,
        /// Names of the witnesses that did sign.
        signed: Vec<String>,
    },
    /// A Merkle proof that does not verify.
    #[error("proof rejected: {0}")]
    Proof(#[from] ProofError),
}

impl Error {
    /// True when the input itself is malformed or unusable (bad input), false
    /// when it is well-formed but fails verification (invalid).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Error::MalformedNote(_)
                | Error::MalformedKey(_)
                | Error::MalformedCheckpoint(_)
                | Error::MalformedProof(_)
                | Error::MalformedTilePath(_)
                | Error::MalformedTile(_)
                | Error::Config(_)
        )
    }
}
