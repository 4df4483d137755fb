//! C2SP tlog-proof (<https://c2sp.org/tlog-proof>): a self-contained text
//! that proves an entry is in a log, verifiable offline with nothing but the
//! log's verifier key (and the witness keys of the policy).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::{parse_decimal, parse_hash, CheckpointPolicy, VerifiedCheckpoint};
use crate::error::Error;
use crate::hash::Hash;
use crate::note::MAX_NOTE_BYTES;
use crate::proof::verify_inclusion;

const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// A tree of fewer than 2^64 leaves has inclusion proofs of at most 64 hashes.
const MAX_PROOF_HASHES: usize = 64;

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// Inclusion proof, from the leaf's sibling up.
    pub hashes: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

/// A tlog-proof that verified: the entry is at `index` in the checkpointed tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The entry's index.
    pub index: u64,
    /// The checkpoint and the witnesses that cosigned it.
    pub checkpoint: VerifiedCheckpoint,
}

impl TlogProof {
    /// Parse the text form. Strict: canonical numbers, canonical base64,
    /// one blank line between the proof hashes and the checkpoint.
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        if data.len() > MAX_NOTE_BYTES + 4096 {
            return Err(Error::MalformedProof("proof is too large".into()));
        }
        let text = std::str::from_utf8(data).map_err(|_| Error::MalformedProof("not valid UTF-8".into()))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| Error::MalformedProof("no blank line before the checkpoint".into()))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(Error::MalformedProof(format!("first line must be {HEADER}")));
        }
        let mut line = lines
            .next()
            .ok_or_else(|| Error::MalformedProof("missing index line".into()))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            let raw = B64
                .decode(b64)
                .map_err(|_| Error::MalformedProof("extra data is not base64".into()))?;
            if raw.is_empty() {
                return Err(Error::MalformedProof("empty extra line".into()));
            }
            extra = Some(raw);
            line = lines
                .next()
                .ok_or_else(|| Error::MalformedProof("missing index line".into()))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| Error::MalformedProof(format!("expected `index N`, found {line:?}")))?;
        let mut hashes = Vec::new();
        for l in lines {
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(Error::MalformedProof(format!(
                    "more than {MAX_PROOF_HASHES} proof hashes"
                )));
            }
            hashes.push(parse_hash(l).ok_or_else(|| Error::MalformedProof(format!("{l:?} is not a base64 hash")))?);
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }

    /// The text form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint);
        bytes
    }

    /// Verify that the entry whose leaf hash is `leaf` is included in the
    /// checkpoint, and that the checkpoint satisfies `policy`.
    pub fn verify(&self, leaf: &Hash, policy: &CheckpointPolicy) -> Result<VerifiedProof, Error> {
        let checkpoint = policy.verify(&self.checkpoint)?;
        verify_inclusion(
            leaf,
            self.index,
            checkpoint.checkpoint.size,
            &self.hashes,
            &checkpoint.checkpoint.root,
        )?;
        Ok(VerifiedProof {
            index: self.index,
            checkpoint,
        })
    }
}
