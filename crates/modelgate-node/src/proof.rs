//! Lineage proofs: the offline check of one inference call's proof chain,
//! with the pinned trust root and nothing else. The gateway serves the
//! document (`GET /lineage/{id}`); `modelgate lineage verify` runs this.
//!
//! The chain, each link checked:
//! 1. every lineage record is included (RFC 6962) in the node's lineage
//!    checkpoint, whose note is signed by the node's key;
//! 2. that checkpoint is exactly the one carried by a `node-anchor` entry,
//!    signed by the same node key;
//! 3. the anchor entry is included in a governance checkpoint signed by the
//!    authority's log key with the trust root's witness quorum;
//! 4. the node key is the one enrolled for that node: the `node-enrollment`
//!    entry naming node and key is included in the same governed log.
//!
//! A full-chain proof (`modelgate-lineage-proof/v2`, served by the authority
//! for every replicated record) adds the governance behind the call, every
//! entry proven against **one** governance checkpoint, each logged before
//! the state the node decided in (the record's `governance.size`):
//! 5. the trust-root version, whose log key is the pinned one's;
//! 6. the model's registration: its OMS bundle verifies with a model key of
//!    that trust root and hashes to the record's digest;
//! 7. the approval (or exception) the record names: its payload hash is the
//!    record's approval id, it covers the record's model, scope and time, and
//!    enough approvers of that trust root signed it for its risk tier;
//! 8. the policy set in force: every policy the record says decided is in it.
//!
//! What an offline check does not redo is the fold itself (that the
//! enrollment was signed by node admins of the trust root in force then):
//! the authority and every node applied it before the entry was logged and
//! witnessed, and `modelgate log audit` replays it for anyone who asks.
//! The pinned trust root's log and witness keys must still be the ones that
//! sign the governance checkpoint in the proof.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{parse_canonical, Envelope, Payload, State};
use modelgate_tlog::{leaf_hash, verify_inclusion, CheckpointPolicy, Hash, TlogProof, VerifierKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The proof document's format tag (the node's own proof).
pub const PROOF_FORMAT: &str = "modelgate-lineage-proof/v1";
/// The full-chain proof's format tag (with [`GovernanceLinks`]).
pub const PROOF_FORMAT_V2: &str = "modelgate-lineage-proof/v2";

/// Largest proof document accepted.
pub const MAX_PROOF_BYTES: usize = 16 << 20;

/// Why a proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineageProofError {
    /// The document (or the trust root) is not what a proof looks like.
    #[error("{0}")]
    Malformed(String),
    /// A link of the chain does not verify.
    #[error("{0}")]
    Invalid(String),
}

use LineageProofError::{Invalid, Malformed};

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedLineage {
    /// The node.
    pub node: String,
    /// The anchored lineage log size.
    pub lineage_size: u64,
    /// The anchor entry's index in the governance log.
    pub anchor_index: u64,
    /// The governance checkpoint size that proves the anchor.
    pub governance_size: u64,
    /// The proven records: (index in the lineage log, the record).
    pub records: Vec<(u64, Value)>,
    /// The governance links a full-chain proof proved, each said in words.
    pub links: Vec<String>,
}

impl VerifiedLineage {
    /// The verdict as one JSON object (`modelgate lineage verify --json`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "verified": true, "node": self.node, "lineage_size": self.lineage_size,
            "anchor_index": self.anchor_index, "governance_size": self.governance_size, "links": self.links,
            "records": self.records.iter().map(|(i, r)| serde_json::json!({"index": i, "record": r})).collect::<Vec<_>>(),
        })
    }

    /// The verdict in words, a line each: what was proven, each governance
    /// link, each record.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!(
            "verified: {} record(s) of node {} are in its lineage log (size {}), anchored at governance index {} \
             (governance checkpoint size {}), under the pinned trust root",
            self.records.len(),
            self.node,
            self.lineage_size,
            self.anchor_index,
            self.governance_size
        )];
        out.extend(self.links.iter().map(|l| format!("  governance: {l}")));
        let s = |v: &Value, or: &'static str| v.as_str().unwrap_or(or).to_owned();
        out.extend(self.records.iter().map(|(i, r)| match r["type"].as_str() {
            Some("request") => format!(
                "  #{i} request: {} in {} called {} ({}) under approval {}, policies {}, governance size {}",
                s(&r["principal"], "?"),
                s(&r["scope"], "?"),
                s(&r["model"], "?"),
                s(&r["digest"], "?"),
                s(&r["approval"], "-"),
                r["policies"],
                r["governance"]["size"]
            ),
            Some("completion") => format!(
                "  #{i} completion: status {}, {}, {} bytes, sha256 {}, usage {}",
                r["status"],
                s(&r["outcome"], "?"),
                r["bytes"],
                s(&r["response_sha256"], "?"),
                r["usage"]
            ),
            _ => format!("  #{i} {r}"),
        }));
        out
    }
}

/// The proof document a node serves at `/lineage/{id}` once the call is
/// anchored: built by the gateway, checked by [`verify_lineage_proof`].
/// Unknown fields are refused: a proof must not seem to claim what is not checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageProof {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The lineage id asked for (the request record's index, decimal).
    pub id: String,
    /// The node.
    pub node: String,
    /// Always true here (see [`PendingLineage`]).
    pub anchored: bool,
    /// Readable copies of the proven records.
    pub records: Vec<ShownRecord>,
    /// The chain.
    pub proof: ProofChain,
}

/// What a node answers for a record not anchored yet: the records, no chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingLineage {
    /// The lineage id.
    pub id: String,
    /// Readable copies of the records.
    pub records: Vec<ShownRecord>,
    /// Always false.
    pub anchored: bool,
    /// What to do.
    pub detail: String,
}

/// A record as JSON, beside its proof (it must say what the proven bytes say).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShownRecord {
    /// Its index in the lineage log.
    pub index: u64,
    /// The record.
    pub record: Value,
}

/// The links of a lineage proof.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofChain {
    /// Each record's bytes and inclusion proof in the lineage checkpoint.
    pub records: Vec<RecordProof>,
    /// The node's signed lineage checkpoint note.
    pub lineage_checkpoint: String,
    /// The `node-anchor` entry carrying that checkpoint, in the governance log.
    pub anchor: GovernedEntry,
    /// The `node-enrollment` entry naming the node's key, in the governance log.
    pub enrollment: GovernedEntry,
    /// The governance behind the call (full-chain proofs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<GovernanceLinks>,
}

/// The governance entries behind a call, each proven against `checkpoint`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceLinks {
    /// The one governance checkpoint every entry of the proof is proven against.
    pub checkpoint: String,
    /// The trust-root version in force when the node decided.
    pub trust_root: GovernedEntry,
    /// The model's registration (absent for a record that names no model digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<GovernedEntry>,
    /// The approval or exception the record names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GovernedEntry>,
    /// The policy set in force when the node decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<GovernedEntry>,
}

/// A lineage record and its RFC 6962 inclusion proof.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordProof {
    /// Its index.
    pub index: u64,
    /// Its bytes, base64.
    pub entry: String,
    /// The inclusion proof's hashes, base64.
    pub inclusion: Vec<String>,
}

/// A governance entry and its tlog-proof (C2SP) against a governance checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernedEntry {
    /// Its index in the governance log.
    pub index: u64,
    /// The signed entry, base64.
    pub entry: String,
    /// The tlog-proof text.
    pub tlog_proof: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, LineageProofError> {
    B64.decode(s).map_err(|e| Malformed(format!("{what}: {e}")))
}

fn hashes(list: &[String], what: &str) -> Result<Vec<Hash>, LineageProofError> {
    list.iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| Malformed(format!("{what}: every hash must be base64 SHA-256")))
        })
        .collect()
}

/// A governance entry proven included under `policy`; returns its payload.
fn governed_entry(
    g: &GovernedEntry,
    what: &str,
    policy: &CheckpointPolicy,
) -> Result<(Payload, Envelope, u64), LineageProofError> {
    let entry = b64(&g.entry, &format!("proof.{what}.entry"))?;
    let index = g.index;
    let tp =
        TlogProof::parse(g.tlog_proof.as_bytes()).map_err(|e| Malformed(format!("proof.{what}.tlog_proof: {e}")))?;
    if tp.index != index {
        return Err(Invalid(format!(
            "the {what} tlog-proof is for index {}, the entry claims {index}",
            tp.index
        )));
    }
    let verified = tp
        .verify(&leaf_hash(&entry), policy)
        .map_err(|e| Invalid(format!("the {what} entry is not proven in the governance log: {e}")))?;
    let env = Envelope::parse(&entry).map_err(|e| Invalid(format!("the {what} entry: {e}")))?;
    let payload = parse_canonical(&env.payload)
        .map_err(|e| e.to_string())
        .and_then(|p| Payload::decode(p).map_err(|e| e.to_string()))
        .map_err(|e| Invalid(format!("the {what} entry's payload: {e}")))?;
    Ok((payload, env, verified.checkpoint.checkpoint.size))
}

/// Step 1: Every record of the proof is in the node's lineage checkpoint `cp`,
/// and its readable copy says what the proven bytes say.
fn proven_records(doc: &LineageProof, cp: &modelgate_tlog::Checkpoint) -> Result<Vec<(u64, Value)>, LineageProofError> {
    if doc.proof.records.is_empty() {
        return Err(Malformed("the proof has no records".into()));
    }
    let mut shown = Vec::new();
    for (k, r) in doc.proof.records.iter().enumerate() {
        let entry = b64(&r.entry, &format!("proof.records[{k}].entry"))?;
        let index = r.index;
        let proof = hashes(&r.inclusion, &format!("proof.records[{k}].inclusion"))?;
        verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root).map_err(|e| {
            Invalid(format!(
                "lineage record {index} is not in the node's checkpoint (size {}): {e}",
                cp.size
            ))
        })?;
        let rv: Value = serde_json::from_slice(&entry).unwrap_or(Value::Null);
        if let Some(copy) = doc.records.iter().find(|x| x.index == index) {
            if copy.record != rv {
                return Err(Invalid(format!(
                    "the readable copy of record {index} differs from the proven bytes"
                )));
            }
        }
        shown.push((index, rv));
    }
    Ok(shown)
}

/// Verify a proof document against the pinned trust root (the governance
/// log's entry 0). Never panics, whatever the bytes.
pub fn verify_lineage_proof(proof: &[u8], pinned: &[u8]) -> Result<VerifiedLineage, LineageProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(Malformed(format!("a proof is at most {MAX_PROOF_BYTES} bytes")));
    }
    let v: Value = serde_json::from_slice(proof).map_err(|e| Malformed(format!("the proof is not JSON: {e}")))?;
    if v["anchored"] == Value::Bool(false) {
        return Err(Invalid(
            "this record is not anchored yet: there is no proof chain to check (fetch it again after the next anchor)"
                .into(),
        ));
    }
    let full = v["format"] == PROOF_FORMAT_V2;
    if v["format"] != PROOF_FORMAT && !full {
        return Err(Malformed(format!(
            "the proof's format is neither {PROOF_FORMAT} nor {PROOF_FORMAT_V2}"
        )));
    }
    let doc: LineageProof =
        serde_json::from_value(v).map_err(|e| Malformed(format!("the proof is not a {PROOF_FORMAT} document: {e}")))?;
    let node = doc.node.clone();
    let root = State::new(pinned)
        .and_then(|mut s| {
            s.apply(pinned)?;
            Ok(s)
        })
        .map_err(|e| Malformed(format!("trust root: {e}")))?
        .trust_root()
        .cloned()
        .ok_or_else(|| Malformed("the trust root file sets no trust root".into()))?;
    let policy = CheckpointPolicy::new(
        root.log_key.clone(),
        root.witness_keys.clone(),
        root.doc.witness_quorum as usize,
    )
    .map_err(|e| Malformed(format!("trust root's witness policy: {e}")))?;

    // 4. The node's key, from its enrollment in the governed log.
    let (payload, _, gov_size) = governed_entry(&doc.proof.enrollment, "enrollment", &policy)?;
    let Payload::NodeEnrollment(enr) = payload else {
        return Err(Invalid("the enrollment entry is not a node-enrollment".into()));
    };
    if enr.node != node {
        return Err(Invalid(format!(
            "the enrollment is for node {:?}, the proof for {node:?}",
            enr.node
        )));
    }
    let node_key = VerifierKey::parse(&enr.key).map_err(|e| Invalid(format!("enrolled key: {e}")))?;

    // 3 and 2. The anchor: in the governed log, signed by the node, carrying the checkpoint.
    let (payload, env, anchor_gov_size) = governed_entry(&doc.proof.anchor, "anchor", &policy)?;
    let Payload::NodeAnchor(anchor) = payload else {
        return Err(Invalid("the anchor entry is not a node-anchor".into()));
    };
    if anchor.node != node {
        return Err(Invalid(format!(
            "the anchor is by node {:?}, not {node:?}",
            anchor.node
        )));
    }
    let pk = *node_key.public_key();
    let id = modelgate_governance::key_id(&pk);
    let signers = env
        .verified_keys(|k| (k == id).then_some(pk))
        .map_err(|e| Invalid(format!("the anchor entry's signatures: {e}")))?;
    if signers.is_empty() {
        return Err(Invalid(
            "the anchor entry is not signed by the node's enrolled key".into(),
        ));
    }
    let note = doc.proof.lineage_checkpoint.as_str();
    if anchor.checkpoint != note {
        return Err(Invalid(
            "the lineage checkpoint is not the one the anchor entry carries".into(),
        ));
    }
    let lineage_policy = CheckpointPolicy::new(node_key.clone(), vec![], 0).map_err(|e| Invalid(e.to_string()))?;
    let cp = lineage_policy
        .verify(note.as_bytes())
        .map_err(|e| Invalid(format!("the lineage checkpoint: {e}")))?
        .checkpoint;

    let shown = proven_records(&doc, &cp)?;
    let links = match (&doc.proof.governance, full) {
        (Some(g), true) => governance_links(&doc.proof, g, &shown, &root, &policy)?,
        (None, true) => return Err(Malformed(format!("a {PROOF_FORMAT_V2} proof needs proof.governance"))),
        (Some(_), false) => {
            return Err(Malformed(format!(
                "proof.governance belongs in a {PROOF_FORMAT_V2} proof"
            )))
        }
        (None, false) => Vec::new(),
    };
    Ok(VerifiedLineage {
        node,
        lineage_size: cp.size,
        anchor_index: doc.proof.anchor.index,
        governance_size: anchor_gov_size.max(gov_size),
        records: shown,
        links,
    })
}

/// The governance links of a full-chain proof (see the module's 5–8).
fn governance_links(
    chain: &ProofChain,
    g: &GovernanceLinks,
    shown: &[(u64, Value)],
    pinned: &modelgate_governance::TrustRoot,
    policy: &CheckpointPolicy,
) -> Result<Vec<String>, LineageProofError> {
    let mut links = Vec::new();
    // One checkpoint for every governed entry.
    let one = g.checkpoint.as_bytes();
    for (what, e) in [
        ("anchor", Some(&chain.anchor)),
        ("enrollment", Some(&chain.enrollment)),
        ("trust_root", Some(&g.trust_root)),
        ("registration", g.registration.as_ref()),
        ("grant", g.grant.as_ref()),
        ("policy", g.policy.as_ref()),
    ] {
        let Some(e) = e else { continue };
        let tp = TlogProof::parse(e.tlog_proof.as_bytes())
            .map_err(|x| Malformed(format!("proof.{what}.tlog_proof: {x}")))?;
        if tp.checkpoint != one {
            return Err(Invalid(format!(
                "the {what} entry is proven against another checkpoint than proof.governance.checkpoint"
            )));
        }
    }
    let cp = policy
        .verify(one)
        .map_err(|e| Invalid(format!("the governance checkpoint: {e}")))?
        .checkpoint;
    links.push(format!(
        "every governance entry below is in the governance log of {} entries (checkpoint signed by {}, witness quorum met)",
        cp.size,
        pinned.log_key
    ));
    // The call the proof is about: its request or denial record.
    let (at, call) = shown
        .iter()
        .find(|(_, r)| matches!(r["type"].as_str(), Some("request" | "denial")))
        .ok_or_else(|| Malformed("a full-chain proof proves a request or a denial record".into()))?;
    let c = Call {
        at: *at,
        record: call,
        decided_in: call["governance"]["size"].as_u64(),
    };
    let root = trust_root_link(&c, g, pinned, policy, &mut links)?;
    registration_link(&c, g, &root, policy, &mut links)?;
    grant_link(&c, g, &root, policy, &mut links)?;
    policy_link(&c, g, policy, &mut links)?;
    Ok(links)
}

/// The call a full-chain proof is about: its index, its record, and the
/// governance size it was decided in (every governed entry must be older).
struct Call<'a> {
    at: u64,
    record: &'a Value,
    decided_in: Option<u64>,
}

impl Call<'_> {
    fn s(&self, k: &str) -> Option<&str> {
        self.record[k].as_str()
    }

    fn before(&self, what: &str, index: u64) -> Result<(), LineageProofError> {
        match self.decided_in {
            Some(size) if index >= size => Err(Invalid(format!(
                "the {what} entry (index {index}) was logged after the state the node decided in (size {size})"
            ))),
            _ => Ok(()),
        }
    }
}

/// Step 5: The trust root the call was governed under: the log key of the pinned one.
fn trust_root_link(
    c: &Call<'_>,
    g: &GovernanceLinks,
    pinned: &modelgate_governance::TrustRoot,
    policy: &CheckpointPolicy,
    links: &mut Vec<String>,
) -> Result<modelgate_governance::TrustRoot, LineageProofError> {
    let (payload, _, _) = governed_entry(&g.trust_root, "trust_root", policy)?;
    let Payload::TrustRoot(doc) = payload else {
        return Err(Invalid("the trust_root entry is not a trust-root".into()));
    };
    let root =
        modelgate_governance::TrustRoot::from_doc(doc).map_err(|e| Invalid(format!("the trust_root entry: {e}")))?;
    if root.log_key != pinned.log_key {
        return Err(Invalid(
            "the trust_root entry names another log key than the pinned trust root".into(),
        ));
    }
    c.before("trust_root", g.trust_root.index)?;
    links.push(format!(
        "trust root version {} (entry {}), the log key of the pinned root",
        root.doc.root_version, g.trust_root.index
    ));

    Ok(root)
}

/// Step 6: The model's registration: its OMS bundle verifies under a model key of the trust root for the record's digest.
fn registration_link(
    c: &Call<'_>,
    g: &GovernanceLinks,
    root: &modelgate_governance::TrustRoot,
    policy: &CheckpointPolicy,
    links: &mut Vec<String>,
) -> Result<(), LineageProofError> {
    if let Some(digest) = c.s("digest") {
        let reg = g.registration.as_ref().ok_or_else(|| {
            Invalid(format!(
                "record {} names model {digest} but the proof has no registration",
                c.at
            ))
        })?;
        let (payload, _, _) = governed_entry(reg, "registration", policy)?;
        let Payload::Model(m) = payload else {
            return Err(Invalid("the registration entry is not a model registration".into()));
        };
        let bundle = B64
            .decode(&m.bundle)
            .map_err(|_| Invalid("the registration's bundle is not base64".into()))?;
        let signer = root
            .model_signers(&bundle)
            .ok()
            .filter(|(_, sig)| hex::encode(sig.manifest.root_digest()) == digest)
            .map(|(signers, _)| signers.into_iter().collect::<Vec<_>>().join(", "));
        let Some(signer) = signer else {
            return Err(Invalid(format!(
                "the registration's OMS bundle does not verify with a model signer of the trust root for digest {digest}"
            )));
        };
        c.before("registration", reg.index)?;
        links.push(format!(
            "model {} {} ({digest}) registered in entry {}, its OMS bundle signed by {signer}",
            m.model_name, m.model_version, reg.index
        ));
    }

    Ok(())
}

/// Step 7: The approval or exception the record names: its id, model, scope, window and its tier's threshold of approvers.
fn grant_link(
    c: &Call<'_>,
    g: &GovernanceLinks,
    root: &modelgate_governance::TrustRoot,
    policy: &CheckpointPolicy,
    links: &mut Vec<String>,
) -> Result<(), LineageProofError> {
    use modelgate_governance::scope::pattern_matches;
    use modelgate_governance::Role;
    let grant_id = c.s("approval").or(c.s("exception"));
    if let Some(id) = grant_id {
        let gr = g
            .grant
            .as_ref()
            .ok_or_else(|| Invalid(format!("record {} names grant {id} but the proof has none", c.at)))?;
        let (payload, env, _) = governed_entry(gr, "grant", policy)?;
        if hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&env.payload)) != id {
            return Err(Invalid(format!(
                "the grant entry is not {id}, the one the record names"
            )));
        }
        let signed = env
            .verified_keys(|k| root.key(k))
            .map_err(|e| Invalid(format!("the grant's signatures: {e}")))?;
        let approvers = root.principals_with(&signed, Role::Approver);
        let (model, scopes, window, tier, kind) = match payload {
            Payload::Approval(a) => (
                a.model,
                a.scopes,
                (a.valid_from, a.valid_until),
                a.risk_tier,
                "approval",
            ),
            Payload::Exception(x) => (x.model, x.scopes, (0, x.expires), x.risk_tier, "exception"),
            _ => {
                return Err(Invalid(
                    "the grant entry is neither an approval nor an exception".into(),
                ))
            }
        };
        if Some(model.as_str()) != c.s("digest") {
            return Err(Invalid(format!("the {kind} is for model {model}, not the record's")));
        }
        let scope = c.s("scope").unwrap_or_default();
        if !scopes.iter().any(|p| pattern_matches(p, scope)) {
            return Err(Invalid(format!("the {kind} does not cover scope {scope:?}")));
        }
        let t = c.record["time"].as_u64().unwrap_or(0);
        if t < window.0 || t >= window.1 {
            return Err(Invalid(format!(
                "the {kind} is valid from {} until {}, the call was at {t}",
                window.0, window.1
            )));
        }
        let need = root.approval_threshold(tier);
        if (approvers.len() as u64) < need {
            return Err(Invalid(format!(
                "the {kind} is signed by {} approver(s) of the trust root; its {tier:?} tier needs {need}",
                approvers.len()
            )));
        }
        c.before("grant", gr.index)?;
        links.push(format!(
            "{kind} {id} (entry {}) by {} ({tier:?} tier, {need} needed) covers scope {scope} at {t}",
            gr.index,
            approvers.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    Ok(())
}

/// Step 8: The policy set: it holds every policy that decided the call.
fn policy_link(
    c: &Call<'_>,
    g: &GovernanceLinks,
    policy: &CheckpointPolicy,
    links: &mut Vec<String>,
) -> Result<(), LineageProofError> {
    let decided: Vec<&str> = c.record["policies"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(p) = &g.policy {
        let (payload, _, _) = governed_entry(p, "policy", policy)?;
        let Payload::PolicySet(set) = payload else {
            return Err(Invalid("the policy entry is not a policy set".into()));
        };
        let ids = modelgate_governance::policy::compile(&set.policies)
            .map_err(|e| Invalid(format!("the policy set does not compile: {e}")))?
            .ids();
        if let Some(missing) = decided.iter().find(|id| !ids.iter().any(|x| x == *id)) {
            return Err(Invalid(format!(
                "policy {missing:?}, which decided the call, is not in the policy set"
            )));
        }
        c.before("policy", p.index)?;
        links.push(format!(
            "policy set {:?} (entry {}) holds {}",
            set.name,
            p.index,
            if decided.is_empty() {
                "the policies in force".to_owned()
            } else {
                decided.join(", ")
            }
        ));
    } else if !decided.is_empty() {
        return Err(Invalid(
            "the record names deciding policies but the proof has no policy set".into(),
        ));
    }
    Ok(())
}
