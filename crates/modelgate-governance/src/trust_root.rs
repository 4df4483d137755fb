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
    /// Keyless (Sigstore) identities whose OMS signatures identify this
    /// principal as a model's signer, checked against the trust root's
    /// Sigstore trusted root. Absent in documents without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyless: Vec<KeylessIdentity>,
}

/// A keyless signer: the OIDC issuer, and the certificate SAN exactly or
/// by an anchored regular expression (one of the two).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessIdentity {
    /// The OIDC issuer URL, exactly.
    pub issuer: String,
    /// The SAN (an e-mail or a workflow URI), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// An expression the whole SAN must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_regexp: Option<String>,
}

impl KeylessIdentity {
    /// As the OMS verifier takes it; why not, for an identity that is not one.
    pub fn to_oms(&self) -> Result<modelgate_oms::Identity, String> {
        if self.issuer.is_empty() {
            return Err("a keyless signer needs an issuer".into());
        }
        let identity = match (&self.identity, &self.identity_regexp) {
            (Some(id), None) if !id.is_empty() => modelgate_oms::IdentityMatch::Exact(id.clone()),
            (None, Some(re)) => modelgate_oms::IdentityMatch::regexp(re)?,
            _ => return Err("a keyless signer names exactly one of identity and identity_regexp".into()),
        };
        Ok(modelgate_oms::Identity {
            identity,
            issuer: self.issuer.clone(),
        })
    }
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
    /// The Sigstore trusted root keyless signers are verified against (a
    /// TrustedRoot document); absent, the public-good one modelgate embeds.
    /// Carried here so every node verifies with the same pinned bytes, and a
    /// change is a signed trust-root version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigstore_trusted_root: Option<serde_json::Value>,
}

/// What a model's OMS bundle proved: the manifest, and for a keyless
/// signature who the certificate names.
#[derive(Clone, Debug)]
pub struct ModelSignature {
    /// The signed manifest.
    pub manifest: modelgate_oms::Manifest,
    /// The keyless signer, when the bundle is keyless.
    pub keyless: Option<modelgate_oms::KeylessSigner>,
}

/// Each principal's keyless identities, as OMS trust under the document's
/// Sigstore root (parsed once, shared).
fn keyless_signers(doc: &TrustRootDoc) -> Result<Vec<(String, modelgate_oms::Trust)>, String> {
    if doc.principals.values().all(|p| p.keyless.is_empty()) {
        return match &doc.sigstore_trusted_root {
            Some(v) => modelgate_oms::trusted_root::TrustedRoot::parse(v.to_string().as_bytes())
                .map(|_| Vec::new())
                .map_err(|e| format!("sigstore_trusted_root: {e}")),
            None => Ok(Vec::new()),
        };
    }
    let root = match &doc.sigstore_trusted_root {
        Some(v) => modelgate_oms::trusted_root::TrustedRoot::parse(v.to_string().as_bytes()),
        None => modelgate_oms::trusted_root::TrustedRoot::public_good(),
    }
    .map_err(|e| format!("sigstore_trusted_root: {e}"))?;
    let root = std::sync::Arc::new(root);
    let mut out = Vec::new();
    for (id, p) in &doc.principals {
        if !p.keyless.is_empty() && !p.roles.contains(&Role::ModelSigner) {
            return Err(format!(
                "principal {id} has keyless identities but not the model-signer role"
            ));
        }
        for k in &p.keyless {
            let identity = k.to_oms().map_err(|e| format!("principal {id}: {e}"))?;
            out.push((
                id.clone(),
                modelgate_oms::Trust::Keyless(std::sync::Arc::clone(&root), identity),
            ));
        }
    }
    Ok(out)
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
    /// Keyless signers, each with the Sigstore root it is verified against.
    keyless: Vec<(String, modelgate_oms::Trust)>,
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
        let keyless = keyless_signers(&doc)?;
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
            keyless,
            log_key,
            cosigner_key,
            witness_keys,
        })
    }

    /// The principals whose model-signing trust (a model key, or a keyless
    /// identity under the Sigstore root) verifies `bundle`, with the manifest
    /// it vouches for (and, keyless, who the certificate names); or why none
    /// does (the last refusal).
    pub fn model_signers(&self, bundle: &[u8]) -> Result<(BTreeSet<String>, ModelSignature), String> {
        let keyed = self
            .model_keys
            .iter()
            .map(|(p, k)| (p, modelgate_oms::Trust::PublicKey(k.clone())));
        let keyless = self.keyless.iter().map(|(p, t)| (p, t.clone()));
        let mut signers = BTreeSet::new();
        let mut signature = None;
        let mut last = String::from("no model signer in the trust root");
        for (principal, trust) in keyed.chain(keyless) {
            match modelgate_oms::verify_bundle_signer(bundle, &trust) {
                Ok((manifest, keyless)) => {
                    signers.insert(principal.clone());
                    signature = Some(ModelSignature { manifest, keyless });
                }
                Err(e) => last = e.to_string(),
            }
        }
        signature.map(|s| (signers, s)).ok_or(last)
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
