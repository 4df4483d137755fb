//! The governance state and the fold that builds it from the log.
//!
//! `state(n) = fold(pinned trust root, entries[0..n])` is pure and
//! deterministic: the same entries give the same state and the same digest
//! on every machine. Each entry is fully checked before anything changes,
//! so a refused entry leaves the state exactly as it was (the authority uses
//! [`State::check`] to refuse what the fold would refuse, before it logs it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use modelgate_tlog::{verify_consistency, CheckpointPolicy, Hash, KeyType, VerifierKey, EMPTY_ROOT};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{record_hash, Collection, DigestCache, Records};
use crate::entry::*;
use crate::envelope::{key_id, Envelope};
use crate::error::{FoldError, GovernanceError, Rule};
use crate::policy::Policies;
use crate::scope::validate_scope;
use crate::trust_root::{RiskTier, Role, TrustRoot, TrustRootDoc};

/// Longest free-text field (names, tickets, reasons, details), in bytes.
pub const TEXT_BYTES_MAX: usize = 4096;

/// A registered model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Root digest (hex): the model's identity (shared with its approvals).
    pub digest: Arc<str>,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Principals who signed it: the OMS signature's and the entry's signers.
    pub signers: BTreeSet<String>,
    /// Log index of the registration.
    pub index: u64,
}

/// An approval in force (until its window ends or a revocation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Id: hex SHA-256 of the payload.
    pub id: Arc<str>,
    /// Model digest.
    pub model: Arc<str>,
    /// Scope patterns.
    pub scopes: Vec<String>,
    /// Valid from (inclusive).
    pub valid_from: u64,
    /// Valid until (exclusive).
    pub valid_until: u64,
    /// Risk tier.
    pub risk_tier: RiskTier,
    /// Ticket.
    pub ticket: String,
    /// Approving principals, sorted. (A `Vec`, not a set: one small
    /// allocation per approval instead of a B-tree node; same encoding.)
    pub approvers: Vec<String>,
    /// Log index.
    pub index: u64,
}

/// A revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// Model digest.
    pub model: String,
    /// Why.
    pub reason: String,
    /// Ticket.
    pub ticket: String,
    /// Revoking principals, sorted.
    pub revokers: Vec<String>,
    /// Log index: from here on the model does not run.
    pub index: u64,
}

/// An exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRecord {
    /// Id: hex SHA-256 of the payload.
    pub id: Arc<str>,
    /// Model digest.
    pub model: Arc<str>,
    /// Scope patterns.
    pub scopes: Vec<String>,
    /// Expiry (exclusive).
    pub expires: u64,
    /// Risk tier meanwhile.
    pub risk_tier: RiskTier,
    /// Ticket.
    pub ticket: String,
    /// Why.
    pub reason: String,
    /// Granting principals, sorted.
    pub approvers: Vec<String>,
    /// Log index.
    pub index: u64,
}

/// The policy set in force.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyRecord {
    /// Id: hex SHA-256 of the payload.
    pub id: String,
    /// Name.
    pub name: String,
    /// The Cedar text.
    pub text: String,
    /// Publishing principals, sorted.
    pub admins: Vec<String>,
    /// Log index.
    pub index: u64,
    #[serde(skip)]
    pub(crate) compiled: Policies,
}

/// A node's latest anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// Lineage log size.
    pub size: u64,
    /// Lineage log root (hex).
    pub root: String,
    /// Log index.
    pub index: u64,
}

/// A node's latest containment report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// The node's report sequence number.
    pub sequence: u64,
    /// Reason.
    pub reason: ContainmentReason,
    /// The EG-MODEL-001 §3 check that failed.
    pub check: crate::Check,
    /// The lifecycle step the model stopped at, if any.
    pub step: Option<crate::LifecycleStep>,
    /// Recovered rather than contained.
    pub recovered: bool,
    /// Models concerned.
    pub models: Vec<String>,
    /// Node time.
    pub time: u64,
    /// Log index.
    pub index: u64,
}

/// An enrolled node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// Its note key (vkey string).
    pub key: String,
    /// Scope patterns it may serve.
    pub scopes: Vec<String>,
    /// Log index of the enrollment.
    pub index: u64,
    /// Latest anchor.
    pub anchor: Option<AnchorRecord>,
    /// Latest containment report.
    pub last_report: Option<ReportRecord>,
    /// Number of reports.
    pub reports: u64,
}

/// The trust root in force, with the index of the entry that set it.
#[derive(Clone, Debug, Serialize)]
pub struct TrustRootRecord {
    /// The document.
    pub doc: TrustRootDoc,
    /// Log index.
    pub index: u64,
    #[serde(skip)]
    pub(crate) parsed: Arc<TrustRoot>,
}

/// The governance state after some prefix of the log.
#[derive(Clone, Debug, Serialize)]
pub struct State {
    /// Entries applied.
    pub size: u64,
    /// The trust root in force (`None` only before entry 0).
    pub trust_root: Option<TrustRootRecord>,
    /// Models by digest. (Records are shared, `Arc`: a record never
    /// changes once folded, so copies of a state share them.)
    pub models: BTreeMap<String, Arc<ModelRecord>>,
    /// Approvals by id.
    pub approvals: BTreeMap<Arc<str>, Arc<ApprovalRecord>>,
    /// Revocations by model digest.
    pub revocations: BTreeMap<String, Arc<RevocationRecord>>,
    /// Exceptions by id.
    pub exceptions: BTreeMap<Arc<str>, Arc<ExceptionRecord>>,
    /// The policy set in force.
    pub policy: Option<PolicyRecord>,
    /// Nodes by id.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The pinned first entry (a trust-root envelope), byte for byte.
    #[serde(skip)]
    pinned: Arc<Vec<u8>>,
    /// Approval and exception ids by model, derived (not part of the digest).
    #[serde(skip)]
    pub(crate) by_model: BTreeMap<Arc<str>, Vec<Arc<str>>>,
    #[serde(skip)]
    digest: DigestCache,
}

/// What an entry will change, computed by [`State::check`].
#[derive(Clone)]
enum Effect {
    TrustRoot(TrustRootRecord),
    Model(Arc<ModelRecord>),
    Approval(Arc<ApprovalRecord>),
    Revocation(Arc<RevocationRecord>),
    Exception(Arc<ExceptionRecord>),
    Policy(PolicyRecord),
    Node(NodeRecord),
    Anchor(String, AnchorRecord),
    Report(String, ReportRecord),
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn payload_id(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

impl State {
    /// The state before entry 0. `pinned` is the trust-root envelope the
    /// caller trusts out of band (a file); entry 0 must be exactly it.
    pub fn new(pinned: &[u8]) -> Result<Self, FoldError> {
        let state = Self {
            size: 0,
            trust_root: None,
            models: BTreeMap::new(),
            approvals: BTreeMap::new(),
            revocations: BTreeMap::new(),
            exceptions: BTreeMap::new(),
            policy: None,
            nodes: BTreeMap::new(),
            pinned: Arc::new(pinned.to_vec()),
            by_model: BTreeMap::new(),
            digest: DigestCache::new(),
        };
        // The pinned root must itself be a valid genesis entry.
        state.check(pinned)?;
        Ok(state)
    }

    /// The trust root in force.
    pub fn trust_root(&self) -> Option<&TrustRoot> {
        self.trust_root.as_ref().map(|r| r.parsed.as_ref())
    }

    /// A copy that shares every record with this state and keeps no digest
    /// cache (its first [`State::digest`] hashes every record): the
    /// authority's working copy, whose digest nobody asks for.
    pub fn working_copy(&self) -> State {
        State {
            size: self.size,
            trust_root: self.trust_root.clone(),
            models: self.models.clone(),
            approvals: self.approvals.clone(),
            revocations: self.revocations.clone(),
            exceptions: self.exceptions.clone(),
            policy: self.policy.clone(),
            nodes: self.nodes.clone(),
            pinned: Arc::clone(&self.pinned),
            by_model: self.by_model.clone(),
            digest: DigestCache::untracked(),
        }
    }

    /// The state's digest (see [`crate::digest`] for its encoding). It is
    /// maintained incrementally: after an entry, only the records it changed
    /// are hashed again.
    pub fn digest(&self) -> Hash {
        self.digest.digest(self.size, self)
    }

    /// Apply entry number `self.size`. On error the state is unchanged.
    pub fn apply(&mut self, entry: &[u8]) -> Result<(), FoldError> {
        let effect = self.check_effect(entry)?;
        self.commit(effect);
        Ok(())
    }

    /// Check entry number `self.size` with exactly the fold's rules, without
    /// applying it.
    pub fn check(&self, entry: &[u8]) -> Result<(), FoldError> {
        self.check_effect(entry).map(|_| ())
    }

    /// Check entry number `self.size` and return what it changes, to be
    /// applied with [`State::commit_checked`] to this state or to an equal
    /// copy of it (the authority's published state, once the entry is
    /// durable) without checking the signatures again.
    pub fn check_entry(&self, entry: &[u8]) -> Result<Checked, FoldError> {
        Ok(Checked {
            index: self.size,
            effect: self.check_effect(entry)?,
        })
    }

    /// Apply what [`State::check_entry`] found, on a state of the size it
    /// was checked at (anything else is refused and changes nothing).
    pub fn commit_checked(&mut self, c: Checked) -> Result<(), FoldError> {
        if c.index != self.size {
            return Err(FoldError::new(
                self.size,
                Rule::Entry,
                format!(
                    "an entry checked at index {} cannot be applied at {}",
                    c.index, self.size
                ),
            ));
        }
        self.commit(c.effect);
        Ok(())
    }

    fn commit(&mut self, effect: Effect) {
        match effect {
            Effect::TrustRoot(r) => {
                self.trust_root = Some(r);
                self.digest.touch_trust_root();
            }
            Effect::Model(m) => {
                self.digest.touch(Collection::Models, &m.digest);
                self.models.insert(m.digest.to_string(), m);
            }
            Effect::Approval(a) => {
                self.digest.touch(Collection::Approvals, &a.id);
                self.by_model
                    .entry(Arc::clone(&a.model))
                    .or_default()
                    .push(Arc::clone(&a.id));
                self.approvals.insert(a.id.clone(), a);
            }
            Effect::Revocation(r) => {
                self.digest.touch(Collection::Revocations, &r.model);
                self.revocations.insert(r.model.clone(), r);
            }
            Effect::Exception(e) => {
                self.digest.touch(Collection::Exceptions, &e.id);
                self.by_model
                    .entry(Arc::clone(&e.model))
                    .or_default()
                    .push(Arc::clone(&e.id));
                self.exceptions.insert(e.id.clone(), e);
            }
            Effect::Policy(p) => {
                self.policy = Some(p);
                self.digest.touch_policy();
            }
            Effect::Node(n) => {
                self.digest.touch(Collection::Nodes, &n.id);
                self.nodes.insert(n.id.clone(), n);
            }
            Effect::Anchor(node, a) => {
                self.digest.touch(Collection::Nodes, &node);
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.anchor = Some(a);
                }
            }
            Effect::Report(node, r) => {
                self.digest.touch(Collection::Nodes, &node);
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.last_report = Some(r);
                    n.reports += 1;
                }
            }
        }
        self.size += 1;
    }

    fn check_effect(&self, bytes: &[u8]) -> Result<Effect, FoldError> {
        let index = self.size;
        let fail = |rule: Rule, detail: String| FoldError::new(index, rule, detail);
        let env = Envelope::parse(bytes).map_err(|e| FoldError::from((index, e)))?;
        let value = crate::canonical::parse_canonical_msg(&env.payload).map_err(|e| fail(Rule::Entry, e))?;
        let payload = Payload::decode(value).map_err(|e| FoldError::from((index, e)))?;
        let id = payload_id(&env.payload);

        let Some(root) = self.trust_root() else {
            // Genesis: exactly the pinned trust root, signed by its own threshold.
            if bytes != self.pinned.as_slice() {
                return Err(fail(
                    Rule::Genesis,
                    "entry 0 must be the pinned trust root, byte for byte".into(),
                ));
            }
            let Payload::TrustRoot(doc) = payload else {
                return Err(fail(Rule::Genesis, "entry 0 must be a trust-root entry".into()));
            };
            let new = TrustRoot::from_doc_msg(doc.clone()).map_err(|e| fail(Rule::TrustRootInvalid, e))?;
            if doc.root_version != 1 {
                return Err(fail(
                    Rule::TrustRootVersion,
                    format!("the first trust root is version 1, not {}", doc.root_version),
                ));
            }
            let verified = env
                .verified_keys(|k| new.key(k))
                .map_err(|e| FoldError::from((index, e)))?;
            let roots = new.principals_with(&verified, Role::Root);
            if (roots.len() as u64) < new.doc.thresholds.root {
                return Err(fail(
                    Rule::TrustRootThreshold,
                    format!(
                        "signed by {} root principals, the threshold is {}",
                        roots.len(),
                        new.doc.thresholds.root
                    ),
                ));
            }
            return Ok(Effect::TrustRoot(TrustRootRecord {
                doc,
                index,
                parsed: Arc::new(new),
            }));
        };

        // Signatures by trust-root keys, verified once per entry (a known
        // key whose signature fails has already refused the entry here).
        let verified = env
            .verified_keys(|k| root.key(k))
            .map_err(|e| FoldError::from((index, e)))?;
        let signers_with =
            |role: Role| -> Result<BTreeSet<String>, FoldError> { Ok(root.principals_with(&verified, role)) };
        let need = |who: &BTreeSet<String>, threshold: u64, what: &str| -> Result<(), FoldError> {
            if (who.len() as u64) < threshold {
                return Err(fail(
                    Rule::Threshold,
                    format!(
                        "{what} needs {threshold} distinct signers with the role; {} signed ({who:?})",
                        who.len()
                    ),
                ));
            }
            Ok(())
        };
        let text = |field: &str, value: &str, required: bool| -> Result<(), FoldError> {
            if required && value.trim().is_empty() {
                let rule = if field == "ticket" { Rule::Ticket } else { Rule::Entry };
                return Err(fail(rule, format!("{field} must not be empty")));
            }
            if value.len() > TEXT_BYTES_MAX {
                return Err(fail(
                    Rule::Entry,
                    format!("{field} is longer than {TEXT_BYTES_MAX} bytes"),
                ));
            }
            let lines = matches!(field, "reason" | "detail");
            text_msg(value, lines).map_err(|e| fail(Rule::Text, format!("{field}: {e}")))
        };
        let patterns = |scopes: &[String]| -> Result<(), FoldError> {
            if scopes.is_empty() {
                return Err(fail(
                    Rule::ScopeGrammar,
                    "at least one scope pattern is required".into(),
                ));
            }
            for s in scopes {
                crate::scope::pattern_msg(s).map_err(|e| fail(Rule::ScopeGrammar, e))?;
            }
            Ok(())
        };
        let live_model = |digest: &str| -> Result<&ModelRecord, FoldError> {
            if !is_digest(digest) {
                return Err(fail(
                    Rule::Entry,
                    format!("model {digest:?} is not a 64-hex-digit root digest"),
                ));
            }
            let m = self
                .models
                .get(digest)
                .ok_or_else(|| fail(Rule::ModelUnknown, format!("model {digest} is not registered")))?;
            if self.revocations.contains_key(digest) {
                return Err(fail(Rule::ModelRevoked, format!("model {digest} is revoked")));
            }
            Ok(m)
        };
        let separation = |model: &ModelRecord| -> Result<(), FoldError> {
            let signing: BTreeSet<String> = verified
                .iter()
                .filter_map(|k| root.principal_of(k))
                .map(str::to_owned)
                .collect();
            let both: Vec<&String> = signing.intersection(&model.signers).collect();
            if !both.is_empty() {
                return Err(fail(
                    Rule::SeparationOfDuties,
                    format!("{both:?} signed model {} and may not approve it", model.digest),
                ));
            }
            Ok(())
        };
        let node_key = |node: &NodeRecord| -> Result<VerifierKey, FoldError> {
            VerifierKey::parse(&node.key).map_err(|e| fail(Rule::AnchorInvalid, format!("node key: {e}")))
        };
        let signed_by_node = |key: &VerifierKey| -> Result<(), FoldError> {
            let vk: VerifyingKey = *key.public_key();
            let kid = key_id(&vk);
            let verified = env
                .verified_keys(|k| (k == kid).then_some(vk))
                .map_err(|e| FoldError::from((index, e)))?;
            if verified.is_empty() {
                return Err(fail(
                    Rule::Threshold,
                    "the entry is not signed by the node's key".into(),
                ));
            }
            Ok(())
        };

        match payload {
            Payload::TrustRoot(doc) => {
                let new = TrustRoot::from_doc_msg(doc.clone()).map_err(|e| fail(Rule::TrustRootInvalid, e))?;
                let old_version = root.doc.root_version;
                if doc.root_version != old_version + 1 {
                    return Err(fail(
                        Rule::TrustRootVersion,
                        format!(
                            "trust root version {} after {old_version}: only {} is accepted",
                            doc.root_version,
                            old_version + 1
                        ),
                    ));
                }
                let old_ok = env
                    .verified_keys(|k| root.key(k))
                    .map_err(|e| FoldError::from((index, e)))?;
                let new_ok = env
                    .verified_keys(|k| new.key(k))
                    .map_err(|e| FoldError::from((index, e)))?;
                let old_roots = root.principals_with(&old_ok, Role::Root);
                let new_roots = new.principals_with(&new_ok, Role::Root);
                if (old_roots.len() as u64) < root.doc.thresholds.root
                    || (new_roots.len() as u64) < new.doc.thresholds.root
                {
                    return Err(fail(
                        Rule::TrustRootThreshold,
                        format!(
                            "needs {} of the current root principals and {} of the new ones; signed by {} and {}",
                            root.doc.thresholds.root,
                            new.doc.thresholds.root,
                            old_roots.len(),
                            new_roots.len()
                        ),
                    ));
                }
                Ok(Effect::TrustRoot(TrustRootRecord {
                    doc,
                    index,
                    parsed: Arc::new(new),
                }))
            }
            Payload::Model(m) => {
                let signers = signers_with(Role::ModelSigner)?;
                need(&signers, root.doc.thresholds.model, "a model registration")?;
                text("model_name", &m.model_name, true)?;
                text("model_version", &m.model_version, true)?;
                let bundle = B64
                    .decode(&m.bundle)
                    .map_err(|_| fail(Rule::Entry, "bundle is not base64".into()))?;
                let mut oms_signers = BTreeSet::new();
                let mut digest = None;
                let mut last_error = String::from("no model-signing keys in the trust root");
                for (principal, key) in &root.model_keys {
                    match modelgate_oms::verify_bundle(&bundle, &modelgate_oms::Trust::PublicKey(key.clone())) {
                        Ok(manifest) => {
                            oms_signers.insert(principal.clone());
                            digest = Some(hex::encode(manifest.root_digest()));
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                }
                let Some(digest) = digest else {
                    return Err(fail(
                        Rule::ModelSignature,
                        format!("the OMS bundle does not verify with any model signer's key: {last_error}"),
                    ));
                };
                if self.models.contains_key(&digest) {
                    return Err(fail(
                        Rule::ModelDuplicate,
                        format!("model {digest} is already registered"),
                    ));
                }
                let signers = signers.union(&oms_signers).cloned().collect();
                Ok(Effect::Model(Arc::new(ModelRecord {
                    digest: digest.into(),
                    name: m.model_name,
                    version: m.model_version,
                    signers,
                    index,
                })))
            }
            Payload::Approval(a) => {
                let model = live_model(&a.model)?;
                separation(model)?;
                patterns(&a.scopes)?;
                text("ticket", &a.ticket, true)?;
                if a.valid_from >= a.valid_until {
                    return Err(fail(
                        Rule::TimeWindow,
                        format!(
                            "valid_from {} is not before valid_until {}",
                            a.valid_from, a.valid_until
                        ),
                    ));
                }
                let approvers = signers_with(Role::Approver)?;
                need(
                    &approvers,
                    root.approval_threshold(a.risk_tier),
                    &format!("a {} approval", a.risk_tier.as_str()),
                )?;
                if self.approvals.contains_key(id.as_str()) {
                    return Err(fail(Rule::Duplicate, format!("approval {id} is already in the log")));
                }
                Ok(Effect::Approval(Arc::new(ApprovalRecord {
                    id: id.into(),
                    model: Arc::clone(&model.digest),
                    scopes: a.scopes,
                    valid_from: a.valid_from,
                    valid_until: a.valid_until,
                    risk_tier: a.risk_tier,
                    ticket: a.ticket,
                    approvers: approvers.into_iter().collect(),
                    index,
                })))
            }
            Payload::Revocation(r) => {
                live_model(&r.model)?;
                text("ticket", &r.ticket, true)?;
                text("reason", &r.reason, true)?;
                let revokers = signers_with(Role::Approver)?;
                need(&revokers, root.doc.thresholds.revocation, "a revocation")?;
                Ok(Effect::Revocation(Arc::new(RevocationRecord {
                    model: r.model,
                    reason: r.reason,
                    ticket: r.ticket,
                    revokers: revokers.into_iter().collect(),
                    index,
                })))
            }
            Payload::Exception(x) => {
                let model = live_model(&x.model)?;
                separation(model)?;
                patterns(&x.scopes)?;
                text("ticket", &x.ticket, true)?;
                text("reason", &x.reason, true)?;
                if x.expires == 0 {
                    return Err(fail(Rule::TimeWindow, "an exception needs an expiry".into()));
                }
                let approvers = signers_with(Role::Approver)?;
                need(&approvers, root.doc.thresholds.exception, "an exception")?;
                if self.exceptions.contains_key(id.as_str()) {
                    return Err(fail(Rule::Duplicate, format!("exception {id} is already in the log")));
                }
                Ok(Effect::Exception(Arc::new(ExceptionRecord {
                    id: id.into(),
                    model: Arc::clone(&model.digest),
                    scopes: x.scopes,
                    expires: x.expires,
                    risk_tier: x.risk_tier,
                    ticket: x.ticket,
                    reason: x.reason,
                    approvers: approvers.into_iter().collect(),
                    index,
                })))
            }
            Payload::PolicySet(p) => {
                let admins = signers_with(Role::PolicyAdmin)?;
                need(&admins, root.doc.thresholds.policy, "a policy set")?;
                text("name", &p.name, true)?;
                if let Some(c) = p.policies.chars().find(|c| is_bidi_control(*c)) {
                    return Err(fail(
                        Rule::Text,
                        format!(
                            "policies hold the bidirectional control U+{:04X}, which can make policy text read otherwise than it runs",
                            u32::from(c)
                        ),
                    ));
                }
                let compiled = crate::policy::compile_msg(&p.policies).map_err(|e| fail(Rule::PolicyInvalid, e))?;
                let in_force = self.policy.as_ref().map_or("", |p| p.id.as_str());
                if p.replaces != in_force {
                    let what = if in_force.is_empty() {
                        "no policy set is in force, so replaces must be empty".to_owned()
                    } else {
                        format!("the policy set in force is {in_force}")
                    };
                    return Err(fail(
                        Rule::Replay,
                        format!("the policy set replaces {:?}, but {what}", p.replaces),
                    ));
                }
                Ok(Effect::Policy(PolicyRecord {
                    id,
                    name: p.name,
                    text: p.policies,
                    admins: admins.into_iter().collect(),
                    index,
                    compiled,
                }))
            }
            Payload::NodeEnrollment(n) => {
                let admins = signers_with(Role::NodeAdmin)?;
                need(&admins, root.doc.thresholds.enrollment, "a node enrollment")?;
                if n.node.is_empty()
                    || n.node.len() > 128
                    || n.node.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(fail(
                        Rule::Entry,
                        format!("node id {:?} is empty, too long or has spaces", n.node),
                    ));
                }
                let key = VerifierKey::parse(&n.key).map_err(|e| fail(Rule::Entry, format!("node key: {e}")))?;
                if key.key_type() != KeyType::Ed25519 {
                    return Err(fail(
                        Rule::Entry,
                        "a node key must be an Ed25519 (0x01) note key".into(),
                    ));
                }
                for s in &n.scopes {
                    crate::scope::pattern_msg(s).map_err(|e| fail(Rule::ScopeGrammar, e))?;
                }
                if self.nodes.contains_key(&n.node) {
                    return Err(fail(
                        Rule::NodeDuplicate,
                        format!("node {} is already enrolled", n.node),
                    ));
                }
                Ok(Effect::Node(NodeRecord {
                    id: n.node,
                    key: n.key,
                    scopes: n.scopes,
                    index,
                    anchor: None,
                    last_report: None,
                    reports: 0,
                }))
            }
            Payload::NodeAnchor(a) => {
                let node = self
                    .nodes
                    .get(&a.node)
                    .ok_or_else(|| fail(Rule::NodeUnknown, format!("node {} is not enrolled", a.node)))?;
                let key = node_key(node)?;
                signed_by_node(&key)?;
                let policy =
                    CheckpointPolicy::new(key, vec![], 0).map_err(|e| fail(Rule::AnchorInvalid, e.to_string()))?;
                let cp = policy
                    .verify(a.checkpoint.as_bytes())
                    .map_err(|e| fail(Rule::AnchorInvalid, format!("lineage checkpoint: {e}")))?;
                let (old_size, old_root) = match &node.anchor {
                    Some(prev) => {
                        let raw = hex_to_hash(&prev.root)
                            .ok_or_else(|| fail(Rule::AnchorInvalid, "stored anchor root".into()))?;
                        (prev.size, raw)
                    }
                    None => (0, EMPTY_ROOT),
                };
                let proof = a
                    .consistency
                    .iter()
                    .map(|h| B64.decode(h).ok().and_then(|b| <Hash>::try_from(b).ok()))
                    .collect::<Option<Vec<Hash>>>()
                    .ok_or_else(|| {
                        fail(
                            Rule::AnchorInvalid,
                            "consistency proof hashes must be base64 SHA-256".into(),
                        )
                    })?;
                let new = &cp.checkpoint;
                // An anchor only moves forward: the same anchor posted again
                // (it is public in the log) must not be appended again.
                if new.size <= old_size {
                    return Err(fail(
                        Rule::Replay,
                        format!(
                            "lineage log size {} is not above the anchored size {old_size}",
                            new.size
                        ),
                    ));
                }
                verify_consistency(old_size, new.size, &proof, &old_root, &new.root).map_err(|e| {
                    fail(
                        Rule::AnchorInvalid,
                        format!(
                            "lineage log size {} is not consistent with the anchored size {old_size}: {e}",
                            new.size
                        ),
                    )
                })?;
                Ok(Effect::Anchor(
                    a.node,
                    AnchorRecord {
                        size: new.size,
                        root: hex::encode(new.root),
                        index,
                    },
                ))
            }
            Payload::ContainmentReport(r) => {
                let node = self
                    .nodes
                    .get(&r.node)
                    .ok_or_else(|| fail(Rule::NodeUnknown, format!("node {} is not enrolled", r.node)))?;
                signed_by_node(&node_key(node)?)?;
                text("detail", &r.detail, false)?;
                if let Some(prev) = &node.last_report {
                    if r.sequence <= prev.sequence {
                        return Err(fail(
                            Rule::Replay,
                            format!(
                                "report sequence {} is not above node {}'s previous report's ({})",
                                r.sequence, r.node, prev.sequence
                            ),
                        ));
                    }
                }
                if let Some(bad) = r.models.iter().find(|m| !is_digest(m)) {
                    return Err(fail(Rule::Entry, format!("model {bad:?} is not a root digest")));
                }
                Ok(Effect::Report(
                    r.node,
                    ReportRecord {
                        sequence: r.sequence,
                        reason: r.reason,
                        check: r.check,
                        step: r.step,
                        recovered: r.recovered,
                        models: r.models,
                        time: r.time,
                        index,
                    },
                ))
            }
        }
    }

    /// Ids of the approvals and exceptions of a model, in log order.
    pub fn grants_of_model<'a>(&'a self, model: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.grants_of(model).iter().map(|id| &**id)
    }

    /// Ids of the approvals and exceptions of a model.
    pub(crate) fn grants_of(&self, model: &str) -> &[Arc<str>] {
        self.by_model.get(model).map_or(&[], Vec::as_slice)
    }

    /// Scope check for a node.
    pub fn node_serves(&self, node: &str, scope: &str) -> Option<bool> {
        self.nodes
            .get(node)
            .map(|n| n.scopes.iter().any(|p| crate::scope::pattern_matches(p, scope)))
    }
}

/// Unicode's bidirectional formatting characters (embeddings, overrides,
/// isolates, marks): they let text display in another order than it is
/// stored, so a reviewer can be shown one thing while another is signed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing (besides white space): zero-width spaces
/// and joiners, the word joiner and invisible operators, the byte-order
/// mark, soft hyphen, fillers and variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Free text as a person will read it in a console or a terminal: no
/// control characters (`lines` allows line feeds and tabs), no
/// bidirectional controls, and — when not empty — something visible.
pub fn check_text(value: &str, lines: bool) -> Result<(), GovernanceError> {
    text_msg(value, lines).map_err(GovernanceError::Text)
}

fn text_msg(value: &str, lines: bool) -> Result<(), String> {
    for c in value.chars() {
        if c.is_control() && !(lines && matches!(c, '\n' | '\t')) {
            return Err(format!("holds the control character U+{:04X}", u32::from(c)));
        }
        if is_bidi_control(c) {
            return Err(format!("holds the bidirectional control U+{:04X}", u32::from(c)));
        }
    }
    if !value.is_empty() && value.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err("holds nothing visible".into());
    }
    Ok(())
}

/// An entry checked against a state: what it will change there.
#[derive(Clone)]
pub struct Checked {
    index: u64,
    effect: Effect,
}

impl Records for State {
    fn record(&self, c: Collection, key: &str) -> Option<Hash> {
        let name = c_name(c);
        match c {
            Collection::Models => self.models.get(key).map(|r| record_hash(name, r)),
            Collection::Approvals => self.approvals.get(key).map(|r| record_hash(name, r)),
            Collection::Revocations => self.revocations.get(key).map(|r| record_hash(name, r)),
            Collection::Exceptions => self.exceptions.get(key).map(|r| record_hash(name, r)),
            Collection::Nodes => self.nodes.get(key).map(|r| record_hash(name, r)),
        }
    }

    fn trust_root_record(&self) -> Option<Hash> {
        self.trust_root.as_ref().map(|r| record_hash("trust-root", r))
    }

    fn policy_record(&self) -> Option<Hash> {
        self.policy.as_ref().map(|r| record_hash("policy", r))
    }

    fn keys(&self, c: Collection) -> Vec<String> {
        match c {
            Collection::Models => self.models.keys().cloned().collect(),
            Collection::Approvals => self.approvals.keys().map(|k| k.to_string()).collect(),
            Collection::Revocations => self.revocations.keys().cloned().collect(),
            Collection::Exceptions => self.exceptions.keys().map(|k| k.to_string()).collect(),
            Collection::Nodes => self.nodes.keys().cloned().collect(),
        }
    }
}

fn c_name(c: Collection) -> &'static str {
    match c {
        Collection::Models => "model",
        Collection::Approvals => "approval",
        Collection::Revocations => "revocation",
        Collection::Exceptions => "exception",
        Collection::Nodes => "node",
    }
}

fn hex_to_hash(s: &str) -> Option<Hash> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Fold entries onto the pinned trust root: the state after all of them, or
/// the first entry that breaks a rule (index, rule, detail).
pub fn fold<'a>(pinned: &[u8], entries: impl IntoIterator<Item = &'a [u8]>) -> Result<State, FoldError> {
    let mut state = State::new(pinned)?;
    for e in entries {
        state.apply(e)?;
    }
    Ok(state)
}

/// Validate a scope (re-exported for requests).
pub fn check_scope(scope: &str) -> Result<(), GovernanceError> {
    validate_scope(scope)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustRootData {
    doc: TrustRootDoc,
    index: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyData {
    id: String,
    name: String,
    text: String,
    admins: Vec<String>,
    index: u64,
}

/// The state as [`State::snapshot`] writes it (every field, nothing derived).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateData {
    size: u64,
    trust_root: Option<TrustRootData>,
    models: BTreeMap<String, Arc<ModelRecord>>,
    approvals: BTreeMap<Arc<str>, Arc<ApprovalRecord>>,
    revocations: BTreeMap<String, Arc<RevocationRecord>>,
    exceptions: BTreeMap<Arc<str>, Arc<ExceptionRecord>>,
    policy: Option<PolicyData>,
    nodes: BTreeMap<String, NodeRecord>,
}

impl State {
    /// The state's records as JSON, for [`State::restore`]. Derived data
    /// (the parsed trust root, compiled policies, indexes) is rebuilt on
    /// restore, not stored.
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| format!("encoding the state: {e}"))
    }

    /// [`State::snapshot`], written to `w` as it is encoded (a large state
    /// is never held twice in memory).
    pub fn snapshot_to(&self, w: impl std::io::Write) -> Result<(), GovernanceError> {
        serde_json::to_writer(w, self).map_err(|e| GovernanceError::Snapshot(format!("encoding the state: {e}")))
    }

    /// Rebuild a state from [`State::snapshot`] bytes, for the pinned trust
    /// root `pinned`. The caller must still check that the restored state's
    /// [`State::digest`] is the one it recorded with the snapshot: a
    /// snapshot is a cache of a fold, never a source of truth.
    pub fn restore(pinned: &[u8], bytes: &[u8]) -> Result<State, GovernanceError> {
        Self::restore_from(pinned, bytes)
    }

    /// [`State::restore`], reading the snapshot from `r` as it is decoded.
    pub fn restore_from(pinned: &[u8], r: impl std::io::Read) -> Result<State, GovernanceError> {
        Self::restore_msg(pinned, r).map_err(GovernanceError::Snapshot)
    }

    fn restore_msg(pinned: &[u8], r: impl std::io::Read) -> Result<State, String> {
        let d: StateData =
            serde_json::from_reader(std::io::BufReader::new(r)).map_err(|e| format!("state snapshot: {e}"))?;
        let mut state = State::new(pinned).map_err(|e| format!("pinned trust root: {e}"))?;
        state.size = d.size;
        if let Some(t) = d.trust_root {
            let parsed = TrustRoot::from_doc_msg(t.doc.clone()).map_err(|e| format!("snapshot trust root: {e}"))?;
            state.trust_root = Some(TrustRootRecord {
                doc: t.doc,
                index: t.index,
                parsed: Arc::new(parsed),
            });
        }
        if let Some(p) = d.policy {
            let compiled = crate::policy::compile_msg(&p.text).map_err(|e| format!("snapshot policy set: {e}"))?;
            state.policy = Some(PolicyRecord {
                id: p.id,
                name: p.name,
                text: p.text,
                admins: p.admins,
                index: p.index,
                compiled,
            });
        }
        // Share what the fold shares (a decoded snapshot has a copy of each
        // string): a grant's model digest is its model record's, and a map
        // key is its record's id.
        let shared = |model: &mut Arc<str>| {
            if let Some(m) = d.models.get(&**model) {
                *model = Arc::clone(&m.digest);
            }
        };
        let approvals: BTreeMap<Arc<str>, Arc<ApprovalRecord>> = d
            .approvals
            .into_values()
            .map(|mut a| {
                shared(&mut Arc::make_mut(&mut a).model);
                (Arc::clone(&a.id), a)
            })
            .collect();
        let exceptions: BTreeMap<Arc<str>, Arc<ExceptionRecord>> = d
            .exceptions
            .into_values()
            .map(|mut e| {
                shared(&mut Arc::make_mut(&mut e).model);
                (Arc::clone(&e.id), e)
            })
            .collect();
        // Grants in log order, as the fold appended them.
        let mut grants: Vec<(u64, Arc<str>, Arc<str>)> = approvals
            .values()
            .map(|a| (a.index, Arc::clone(&a.model), Arc::clone(&a.id)))
            .chain(
                exceptions
                    .values()
                    .map(|e| (e.index, Arc::clone(&e.model), Arc::clone(&e.id))),
            )
            .collect();
        grants.sort();
        for (_, model, id) in grants {
            state.by_model.entry(model).or_default().push(id);
        }
        // Its first digest hashes every record (the caller's check).
        state.digest = DigestCache::untracked();
        state.models = d.models;
        state.approvals = approvals;
        state.revocations = d.revocations;
        state.exceptions = exceptions;
        state.nodes = d.nodes;
        Ok(state)
    }
}
