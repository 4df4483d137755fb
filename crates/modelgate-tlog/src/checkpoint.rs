//! C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>) and the witness
//! policy that decides whether a signed checkpoint is trusted: the log's own
//! signature plus a quorum of cosigners (<https://c2sp.org/tlog-cosignature>).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::error::Error;
use crate::hash::Hash;
use crate::note::{KeyType, Note, SignerKey, VerifierKey};

/// The text of a checkpoint: origin, tree size, root hash, extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log42`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
    /// Opaque extension lines (each non-empty, without newline).
    pub extensions: Vec<String>,
}

/// Parse an ASCII decimal with no sign and no leading zero (unless it is `0`).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Decode one base64 SHA-256 hash.
pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    let raw = B64.decode(s).ok()?;
    raw.try_into().ok()
}

impl Checkpoint {
    /// Parse a checkpoint note text (ending in a newline).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| Error::MalformedCheckpoint("text must end with a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(Error::MalformedCheckpoint("empty origin line".into()));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| Error::MalformedCheckpoint("missing tree size".into()))?;
        let size = parse_decimal(size_line)
            .ok_or_else(|| Error::MalformedCheckpoint(format!("tree size {size_line:?} is not a canonical decimal")))?;
        let root_line = lines
            .next()
            .ok_or_else(|| Error::MalformedCheckpoint("missing root hash".into()))?;
        let root = parse_hash(root_line)
            .ok_or_else(|| Error::MalformedCheckpoint(format!("root {root_line:?} is not a base64 SHA-256 hash")))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(Error::MalformedCheckpoint("empty extension line".into()));
            }
            extensions.push(line.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The note text of this checkpoint.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Sign this checkpoint with the log's Ed25519 note key, giving a note
    /// ready to serve. The key name must equal the origin, as the spec
    /// recommends and as [`CheckpointPolicy`] requires.
    pub fn sign(&self, log_key: &SignerKey) -> Result<Note, Error> {
        self.validate()?;
        if log_key.name() != self.origin {
            return Err(Error::Config(format!(
                "log key name {:?} differs from the origin {:?}",
                log_key.name(),
                self.origin
            )));
        }
        let text = self.to_text();
        let mut note = Note::new(&text)?;
        note.add_signature(log_key.sign(&text)?)?;
        Ok(note)
    }

    fn validate(&self) -> Result<(), Error> {
        let bad_line = |l: &str| l.is_empty() || l.contains('\n') || l.chars().any(|c| c < ' ');
        if bad_line(&self.origin) {
            return Err(Error::MalformedCheckpoint("origin must be one non-empty line".into()));
        }
        if self.extensions.iter().any(|e| bad_line(e)) {
            return Err(Error::MalformedCheckpoint(
                "extension lines must be single non-empty lines".into(),
            ));
        }
        Ok(())
    }
}

/// Which signatures make a checkpoint trusted: the log's key, and at least
/// `quorum` of the listed witnesses.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    origin: String,
    log_key: VerifierKey,
    witnesses: Vec<VerifierKey>,
    quorum: usize,
}

/// A checkpoint whose signatures satisfied a [`CheckpointPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// Witnesses whose signature verified, with their cosignature timestamp
    /// (`None` for plain Ed25519 witness signatures).
    pub witnesses: Vec<(String, Option<u64>)>,
    /// The exact note bytes that were verified.
    pub note: Vec<u8>,
}

impl CheckpointPolicy {
    /// A policy for the log `log_key` (whose name is the origin), trusting
    /// `witnesses` with a quorum of `quorum`. The log key must be an Ed25519
    /// note key; the quorum must be reachable; witness names must differ from
    /// each other and from the log.
    pub fn new(log_key: VerifierKey, witnesses: Vec<VerifierKey>, quorum: usize) -> Result<Self, Error> {
        if log_key.key_type() != KeyType::Ed25519 {
            return Err(Error::Config(format!(
                "log key {} must be an Ed25519 (0x01) note key",
                log_key.name()
            )));
        }
        if quorum > witnesses.len() {
            return Err(Error::Config(format!(
                "quorum {quorum} exceeds the {} witnesses given",
                witnesses.len()
            )));
        }
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i].iter().any(|o| o.name() == w.name()) {
                return Err(Error::Config(format!("witness {} is listed twice", w.name())));
            }
            if w == &log_key {
                return Err(Error::Config("the log key cannot also count as a witness".into()));
            }
        }
        Ok(Self {
            origin: log_key.name().to_owned(),
            log_key,
            witnesses,
            quorum,
        })
    }

    /// The origin this policy accepts.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's key.
    pub fn log_key(&self) -> &VerifierKey {
        &self.log_key
    }

    /// Verify a signed checkpoint note: well-formed, signed by the log, for
    /// this origin, and cosigned by at least `quorum` distinct witnesses.
    pub fn verify(&self, note_bytes: &[u8]) -> Result<VerifiedCheckpoint, Error> {
        let note = Note::parse(note_bytes)?;
        let checkpoint = Checkpoint::parse(note.text())?;
        let mut known = Vec::with_capacity(1 + self.witnesses.len());
        known.push(self.log_key.clone());
        known.extend(self.witnesses.iter().cloned());
        let verified = note.verify(&known).map_err(|e| match e {
            Error::UnverifiedNote => Error::MissingLogSignature(self.log_key.to_string()),
            other => other,
        })?;
        if checkpoint.origin != self.origin {
            return Err(Error::WrongOrigin {
                got: checkpoint.origin,
                want: self.origin.clone(),
            });
        }
        if !verified.verified.iter().any(|(k, _)| k == &self.log_key) {
            return Err(Error::MissingLogSignature(self.log_key.to_string()));
        }
        let witnesses: Vec<(String, Option<u64>)> = verified
            .verified
            .iter()
            .filter(|(k, _)| k != &self.log_key)
            .map(|(k, ts)| (k.name().to_owned(), *ts))
            .collect();
        if witnesses.len() < self.quorum {
            return Err(Error::QuorumNotMet {
                got: witnesses.len(),
                want: self.quorum,
                signed: witnesses.into_iter().map(|(n, _)| n).collect(),
            });
        }
        Ok(VerifiedCheckpoint {
            checkpoint,
            witnesses,
            note: note_bytes.to_vec(),
        })
    }
}
