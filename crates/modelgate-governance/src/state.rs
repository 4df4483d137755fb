//! The governance state and the fold that builds it from the log.
//!
//! `state(n) = fold(pinned trust root, entries[0..n])` is pure and
//! deterministic: the same entries give the same state and the same digest
//! on every machine. Each entry is fully checked before anything changes,
//! so a refused entry leaves the state exactly as it was (the authority uses
//! [`State::check`] to refuse what the fold would refuse, before it logs it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use modelgate_tlog::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{record_hash, Collection, DigestCache, Records};
use crate::entry::*;
use crate::error::{FoldError, GovernanceError, Rule};
use crate::policy::Policies;
use crate::scope::validate_scope;
use crate::trust_root::{RiskTier, TrustRoot, TrustRootDoc};

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
    /// For a keyless signature: the certificate's identity and issuer, the
    /// Rekor log index and the verified signing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<modelgate_oms::KeylessSigner>,
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
    pub(crate) pinned: Arc<Vec<u8>>,
    /// Approval and exception ids by model, derived (not part of the digest).
    #[serde(skip)]
    pub(crate) by_model: BTreeMap<Arc<str>, Vec<Arc<str>>>,
    #[serde(skip)]
    digest: DigestCache,
}

/// What an entry will change, computed by [`State::check`].
#[derive(Clone)]
pub(crate) enum Effect {
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

pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn payload_id(payload: &[u8]) -> String {
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
pub(crate) fn is_bidi_control(c: char) -> bool {
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

pub(crate) fn text_msg(value: &str, lines: bool) -> Result<(), String> {
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

pub(crate) fn hex_to_hash(s: &str) -> Option<Hash> {
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
