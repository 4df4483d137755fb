//! Approvals short of their threshold, waiting for cosigners.
//!
//! An approval at a tier that needs more approvers than have signed is
//! refused by the fold; until now it waited as a file passed from one
//! approver to the next. Posted here (`POST /api/v1/pending`), it is kept,
//! shown (`GET /api/v1/pending`, and on the console: who signed, how many
//! more are needed), and merged with every later copy of the same payload:
//! their signatures are pooled. Once the pooled signatures meet the
//! threshold the approval goes into the log like any submission, and leaves
//! this pool.
//!
//! Nothing here is trusted: a pending approval is kept only when the fold
//! refuses it for its threshold alone (every signature by a known key
//! verifies, its model is registered and not revoked, its text and window
//! are valid), and it is checked again in full when it is submitted. The
//! pool is bounded ([`MAX_PENDING`]), its file is written atomically and
//! fsynced before an answer, and entries whose window has ended are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{Envelope, Role, Rule, State};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::AuthorityError;

/// Pending approvals kept at most (a full pool refuses new ones, 503).
pub const MAX_PENDING: usize = 1_000;

/// One approval waiting for cosigners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// Hex SHA-256 of the payload: the approval's id once in the log.
    pub id: String,
    /// The model's digest.
    pub model: String,
    /// Its risk tier.
    pub tier: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its ticket.
    pub ticket: String,
    /// End of its window (POSIX seconds): dropped after it.
    pub valid_until: u64,
    /// Approvers whose signatures verified, sorted.
    pub signed_by: Vec<String>,
    /// Signatures still needed.
    pub needed: u64,
    /// Approvers who may still sign (the trust root's approvers, less those
    /// who signed and those who signed the model).
    pub may_sign: Vec<String>,
    /// The envelope with every pooled signature (base64).
    pub envelope: String,
}

/// What a post did.
#[derive(Debug)]
pub enum Posted {
    /// Still short: kept (or merged), with who signed and how many more.
    Pending(PendingApproval),
    /// The pooled signatures meet the threshold: these bytes go to the log.
    Complete(Vec<u8>),
}

/// The pool, kept in a file beside the log.
pub struct Pool {
    path: PathBuf,
    items: Mutex<BTreeMap<String, PendingApproval>>,
}

fn io(e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::io(e.to_string())
}

impl Pool {
    /// The pool kept at `path` (empty when the file does not exist).
    pub fn open(path: &Path) -> Result<Self, AuthorityError> {
        let items = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<Vec<PendingApproval>>(&b)
                .map_err(|e| AuthorityError::config(format!("{}: {e}", path.display())))?
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(format!("couldn't read {}: {e}", path.display()))),
        };
        Ok(Self {
            path: path.to_owned(),
            items: Mutex::new(items),
        })
    }

    fn save(&self, items: &BTreeMap<String, PendingApproval>) -> Result<(), AuthorityError> {
        let bytes = serde_json::to_vec(&items.values().collect::<Vec<_>>()).map_err(io)?;
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Every pending approval still open at `now` and not yet in `state`.
    pub fn list(&self, state: &State, now: u64) -> Vec<PendingApproval> {
        self.items
            .lock()
            .map(|m| {
                m.values()
                    .filter(|p| p.valid_until > now && !state.approvals.contains_key(p.id.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Take `bytes` (an approval envelope) into the pool, pooling its
    /// signatures with any earlier copy of the same payload. Refused unless
    /// the fold refuses the pooled envelope for its threshold alone.
    pub fn post(&self, state: &State, bytes: &[u8], now: u64) -> Result<Posted, PendingError> {
        let env = Envelope::parse(bytes).map_err(|e| PendingError::Malformed(e.to_string()))?;
        let payload: serde_json::Value =
            serde_json::from_slice(&env.payload).map_err(|e| PendingError::Malformed(e.to_string()))?;
        if payload["type"] != "approval" {
            return Err(PendingError::Malformed("only approvals wait for cosigners here".into()));
        }
        let id = hex::encode(Sha256::digest(&env.payload));
        if let Some(done) = state.approvals.get(id.as_str()) {
            return Err(PendingError::AlreadyApproved { index: done.index });
        }
        let root = state
            .trust_root()
            .ok_or_else(|| PendingError::Internal("no trust root".into()))?;
        let model_signers = state
            .models
            .get(payload["model"].as_str().unwrap_or_default())
            .map(|m| m.signers.clone())
            .unwrap_or_default();
        let posted = countable(&env, root, &model_signers)?;
        let mut items = self
            .items
            .lock()
            .map_err(|_| PendingError::Internal("pool lock poisoned".into()))?;
        items.retain(|_, p| p.valid_until > now && !state.approvals.contains_key(p.id.as_str()));
        // Pool with what is already here: one signature per approver, the
        // one pooled first kept.
        let mut merged = Envelope {
            payload: env.payload.clone(),
            signatures: Vec::new(),
        };
        let mut principals = BTreeSet::new();
        if let Some(p) = items.get(&id) {
            let earlier = B64
                .decode(&p.envelope)
                .ok()
                .and_then(|b| Envelope::parse(&b).ok())
                .ok_or_else(|| PendingError::Internal("a pooled envelope does not parse".into()))?;
            for (principal, sig) in countable(&earlier, root, &model_signers)
                .map_err(|e| PendingError::Internal(format!("a pooled copy no longer counts: {e}")))?
            {
                principals.insert(principal);
                merged.signatures.push(sig);
            }
        }
        for (principal, sig) in posted {
            if principals.insert(principal) {
                merged.signatures.push(sig);
            }
        }
        let merged_bytes = merged.to_bytes().map_err(|e| PendingError::Malformed(e.to_string()))?;
        match state.check(&merged_bytes) {
            Ok(()) => {
                items.remove(&id);
                self.save(&items).map_err(|e| PendingError::Internal(e.to_string()))?;
                Ok(Posted::Complete(merged_bytes))
            }
            Err(e) if e.rule == Rule::Threshold => {
                if !items.contains_key(&id) && items.len() >= MAX_PENDING {
                    return Err(PendingError::Full);
                }
                let verified = merged
                    .verified_keys(|k| root.key(k))
                    .map_err(|e| PendingError::Malformed(e.to_string()))?;
                let signed_by = root.principals_with(&verified, Role::Approver);
                if signed_by.is_empty() {
                    return Err(PendingError::NoApprover);
                }
                let tier: modelgate_governance::RiskTier = serde_json::from_value(payload["risk_tier"].clone())
                    .map_err(|e| PendingError::Malformed(e.to_string()))?;
                let model = payload["model"].as_str().unwrap_or_default().to_owned();
                let may_sign = root
                    .doc
                    .principals
                    .iter()
                    .filter(|(id, p)| {
                        p.roles.contains(&Role::Approver) && !signed_by.contains(*id) && !model_signers.contains(*id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                let p = PendingApproval {
                    id: id.clone(),
                    model,
                    tier: tier.as_str().to_owned(),
                    scopes: payload["scopes"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    ticket: payload["ticket"].as_str().unwrap_or_default().to_owned(),
                    valid_until: payload["valid_until"].as_u64().unwrap_or(0),
                    needed: root.approval_threshold(tier).saturating_sub(signed_by.len() as u64),
                    signed_by: signed_by.into_iter().collect(),
                    may_sign,
                    envelope: B64.encode(&merged_bytes),
                };
                items.insert(id, p.clone());
                self.save(&items).map_err(|e| PendingError::Internal(e.to_string()))?;
                Ok(Posted::Pending(p))
            }
            Err(e) => Err(PendingError::Refused(e)),
        }
    }
}

/// One signature of an envelope: (key id, signature).
type Signature = (String, [u8; 64]);

/// The signatures of `env` that the pool may count, each with its
/// principal: every one must be by a key of a trust-root principal with the
/// approver role who did not sign the model (separation of duties), must
/// verify, and no principal may sign twice. Anything else refuses the whole copy: a signature the
/// pool cannot count would only take room the genuine ones need (an
/// envelope holds at most 16).
fn countable(
    env: &Envelope,
    root: &modelgate_governance::TrustRoot,
    model_signers: &BTreeSet<String>,
) -> Result<Vec<(String, Signature)>, PendingError> {
    let message = modelgate_governance::pae(&env.payload);
    let mut out: Vec<(String, Signature)> = Vec::new();
    for (kid, sig) in &env.signatures {
        let refuse = |why: &str| PendingError::Signature(format!("the signature by key {kid}: {why}"));
        let (Some(key), Some(principal)) = (root.key(kid), root.principal_of(kid)) else {
            return Err(refuse("no principal of the trust root holds this key"));
        };
        if model_signers.contains(principal) {
            return Err(refuse(&format!(
                "separation-of-duties: {principal} signed the model and may not approve it"
            )));
        }
        let approver = root
            .doc
            .principals
            .get(principal)
            .is_some_and(|p| p.roles.contains(&Role::Approver));
        if !approver {
            return Err(refuse(&format!("{principal} is not an approver")));
        }
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(sig))
            .map_err(|_| refuse("it does not verify"))?;
        if out.iter().any(|(p, _)| p == principal) {
            return Err(refuse(&format!("{principal} signed this copy twice")));
        }
        out.push((principal.to_owned(), (kid.clone(), *sig)));
    }
    Ok(out)
}

/// Why a pending approval was not kept.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    /// Not an approval envelope.
    #[error("{0}")]
    Malformed(String),
    /// Refused for another reason than its threshold.
    #[error(transparent)]
    Refused(modelgate_governance::FoldError),
    /// Signed by no approver of the trust root.
    #[error("no approver of the trust root signed it")]
    NoApprover,
    /// A signature the pool cannot count: nothing of the copy was kept.
    #[error("{0}; nothing of this copy was kept")]
    Signature(String),
    /// The log already holds this approval.
    #[error("this approval is already in the log, at index {index}")]
    AlreadyApproved {
        /// Its index.
        index: u64,
    },
    /// The pool is full.
    #[error("{MAX_PENDING} approvals are already waiting for cosigners")]
    Full,
    /// The pool could not be kept.
    #[error("{0}")]
    Internal(String),
}
