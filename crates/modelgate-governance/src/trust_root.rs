//! The trust root: every key that may act on the governance log, the roles
//! they hold, how many must agree for each action, the authority's and the
//! witnesses' log keys, and the freshness bounds nodes enforce.
//!
//! It is versioned like a TUF root: version N+1 is accepted only when signed
//! by a threshold of version N's root keys *and* of its own; any other
//! version number (a rollback, a replay, a skip) is refused.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use modelgate_tlog::{KeyType, VerifierKey};
use serde::{Deserialize, Serialize};

use crate::envelope::key_id;

/// Roles a principal can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Signs trust-root versions.
    Root,
    /// Runs the authority (its keys are in `authority`).
    Authority,
    /// Cosigns checkpoints (its keys are in `witnesses`).
    Witness,
    /// Signs models (OMS) and registers them.
    ModelSigner,
    /// Approves, revokes, grants exceptions.
    Approver,
    /// Publishes policy sets.
    PolicyAdmin,
    /// Enrolls runtime nodes.
    NodeAdmin,
}

/// Risk tiers; each has its own approval threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskTier {
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk.
    High,
    /// Critical risk.
    Critical,
}

impl RiskTier {
    /// The tier's name as it appears in documents and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
            RiskTier::Critical => "critical",
        }
    }

    /// The tier named `s` (`low`, `medium`, `high`, `critical`).
    pub fn parse(s: &str) -> Option<Self> {
        [RiskTier::Low, RiskTier::Medium, RiskTier::High, RiskTier::Critical]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// One principal: a person or a system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Ed25519 public keys (base64 of 32 bytes) that sign governance entries.
    pub keys: Vec<String>,
    /// Model-signing public keys (SPKI PEM) whose OMS signatures identify
    /// this principal as a model's signer.
    pub model_keys: Vec<String>,
}

/// Approval thresholds per risk tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierThresholds {
    /// Low tier.
    pub low: u64,
    /// Medium tier.
    pub medium: u64,
    /// High tier.
    pub high: u64,
    /// Critical tier.
    pub critical: u64,
}

/// How many distinct principals of the right role must sign each action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Root keys for a trust-root version.
    pub root: u64,
    /// Model signers for a model registration.
    pub model: u64,
    /// Approvers for an approval, by tier.
    pub approval: TierThresholds,
    /// Approvers for a revocation.
    pub revocation: u64,
    /// Approvers for an exception.
    pub exception: u64,
    /// Policy admins for a policy set.
    pub policy: u64,
    /// Node admins for an enrollment.
    pub enrollment: u64,
}

/// The authority's note keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityKeys {
    /// Signs checkpoints (C2SP vkey, type 0x01); its name is the log origin.
    pub log: String,
    /// Timestamped cosignatures proving freshness (C2SP vkey, type 0x04).
    pub cosigner: String,
}

/// Freshness bounds every node enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// Oldest authority timestamp a node accepts before containing.
    pub max_staleness_seconds: u64,
    /// Longest a node may go without anchoring its lineage log.
    pub anchor_max_age_seconds: u64,
}

/// The trust-root document, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRootDoc {
    /// Always `trust-root`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u64,
    /// The document's own version: 1, 2, 3, ...
    pub root_version: u64,
    /// Principals by id.
    pub principals: BTreeMap<String, Principal>,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// The authority's keys.
    pub authority: AuthorityKeys,
    /// Witness cosigner keys (C2SP vkeys).
    pub witnesses: Vec<String>,
    /// How many witnesses must cosign a checkpoint.
    pub witness_quorum: u64,
    /// Freshness bounds.
    pub freshness: Freshness,
}

/// A validated trust root, with its keys indexed.
#[derive(Clone, Debug)]
pub struct TrustRoot {
    /// The document.
    pub doc: TrustRootDoc,
    /// key id → (principal id, key).
    keys: BTreeMap<String, (String, VerifyingKey)>,
    /// Parsed model-signing keys: (principal id, key).
    pub(crate) model_keys: Vec<(String, modelgate_oms::PublicKey)>,
    /// The authority's log key.
    pub log_key: VerifierKey,
    /// The authority's cosigner key.
    pub cosigner_key: VerifierKey,
    /// The witnesses' keys.
    pub witness_keys: Vec<VerifierKey>,
}

impl TrustRoot {
    /// Validate a document: keys parse, each key belongs to one principal,
    /// every threshold is at least 1, the root threshold is reachable by the
    /// principals holding the root role, the witness quorum is reachable.
    pub fn from_doc(doc: TrustRootDoc) -> Result<Self, crate::GovernanceError> {
        Self::from_doc_msg(doc).map_err(crate::GovernanceError::TrustRoot)
    }

    pub(crate) fn from_doc_msg(doc: TrustRootDoc) -> Result<Self, String> {
        if doc.kind != "trust-root" || doc.version != 1 {
            return Err(format!(
                "not a trust-root v1 document (type {:?} version {})",
                doc.kind, doc.version
            ));
        }
        if doc.root_version == 0 {
            return Err("root_version starts at 1".into());
        }
        let mut keys = BTreeMap::new();
        let mut model_keys = Vec::new();
        for (id, p) in &doc.principals {
            if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("principal id {id:?} is empty, too long or has spaces"));
            }
            if p.roles.is_empty() {
                return Err(format!("principal {id} has no role"));
            }
            for k in &p.keys {
                let raw: [u8; 32] = B64
                    .decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("principal {id}: key {k:?} is not base64 of 32 bytes"))?;
                let key = VerifyingKey::from_bytes(&raw)
                    .map_err(|_| format!("principal {id}: key {k} is not a valid Ed25519 key"))?;
                if let Some((other, _)) = keys.insert(key_id(&key), (id.clone(), key)) {
                    return Err(format!("key {k} is listed for both {other} and {id}"));
                }
            }
            if !p.model_keys.is_empty() && !p.roles.contains(&Role::ModelSigner) {
                return Err(format!("principal {id} has model keys but not the model-signer role"));
            }
            for pem in &p.model_keys {
                let key =
                    modelgate_oms::PublicKey::from_pem(pem, "model key").map_err(|e| format!("principal {id}: {e}"))?;
                model_keys.push((id.clone(), key));
            }
        }
        let holders = |role: Role| {
            doc.principals
                .values()
                .filter(|p| p.roles.contains(&role) && !p.keys.is_empty())
                .count() as u64
        };
        let t = &doc.thresholds;
        for (name, need, role) in [
            ("root", t.root, Role::Root),
            ("model", t.model, Role::ModelSigner),
            ("approval.low", t.approval.low, Role::Approver),
            ("approval.medium", t.approval.medium, Role::Approver),
            ("approval.high", t.approval.high, Role::Approver),
            ("approval.critical", t.approval.critical, Role::Approver),
            ("revocation", t.revocation, Role::Approver),
            ("exception", t.exception, Role::Approver),
            ("policy", t.policy, Role::PolicyAdmin),
            ("enrollment", t.enrollment, Role::NodeAdmin),
        ] {
            if need == 0 {
                return Err(format!("threshold {name} is 0; every action needs at least one signer"));
            }
            // Only the root threshold must be reachable: an unreachable root
            // threshold could never rotate the trust root again. Any other
            // unreachable threshold just means nobody can act yet (a fresh
            // authority before approvers are added), which fails closed.
            if role == Role::Root && need > holders(role) {
                return Err(format!(
                    "threshold {name} is {need} but only {} principals hold that role with keys",
                    holders(role)
                ));
            }
        }
        let log_key = VerifierKey::parse(&doc.authority.log).map_err(|e| format!("authority.log: {e}"))?;
        if log_key.key_type() != KeyType::Ed25519 {
            return Err("authority.log must be an Ed25519 (0x01) note key".into());
        }
        let cosigner_key =
            VerifierKey::parse(&doc.authority.cosigner).map_err(|e| format!("authority.cosigner: {e}"))?;
        if cosigner_key.key_type() != KeyType::CosignatureV1 {
            return Err("authority.cosigner must be a cosignature/v1 (0x04) key".into());
        }
        let witness_keys = doc
            .witnesses
            .iter()
            .map(|w| VerifierKey::parse(w).map_err(|e| format!("witness {w}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if doc.witness_quorum > witness_keys.len() as u64 {
            return Err(format!(
                "witness_quorum {} exceeds the {} witnesses",
                doc.witness_quorum,
                witness_keys.len()
            ));
        }
        if doc.freshness.max_staleness_seconds == 0 || doc.freshness.anchor_max_age_seconds == 0 {
            return Err("freshness bounds must be positive".into());
        }
        Ok(Self {
            doc,
            keys,
            model_keys,
            log_key,
            cosigner_key,
            witness_keys,
        })
    }

    /// The model-signing (OMS) keys: (principal, key).
    pub fn model_keys(&self) -> &[(String, modelgate_oms::PublicKey)] {
        &self.model_keys
    }

    /// The governance key with this key id, if any.
    pub fn key(&self, key_id: &str) -> Option<VerifyingKey> {
        self.keys.get(key_id).map(|(_, k)| *k)
    }

    /// The principal holding a key id.
    pub fn principal_of(&self, key_id: &str) -> Option<&str> {
        self.keys.get(key_id).map(|(p, _)| p.as_str())
    }

    /// Distinct principals with `role` among these verified key ids.
    pub fn principals_with(&self, key_ids: &[String], role: Role) -> BTreeSet<String> {
        key_ids
            .iter()
            .filter_map(|k| self.principal_of(k))
            .filter(|p| self.doc.principals.get(*p).is_some_and(|pr| pr.roles.contains(&role)))
            .map(str::to_owned)
            .collect()
    }

    /// The approval threshold for a tier.
    pub fn approval_threshold(&self, tier: RiskTier) -> u64 {
        let t = &self.doc.thresholds.approval;
        match tier {
            RiskTier::Low => t.low,
            RiskTier::Medium => t.medium,
            RiskTier::High => t.high,
            RiskTier::Critical => t.critical,
        }
    }
}
