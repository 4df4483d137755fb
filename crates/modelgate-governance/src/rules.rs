//! The fold's rules, one per entry type: what an entry must be for the fold
//! to take it, judged against the state before it. Nothing here changes the
//! state: a rule returns the effect the entry would have (the fold applies
//! it), or the rule it breaks, with the entry's index and what failed.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use modelgate_tlog::{verify_consistency, CheckpointPolicy, Hash, KeyType, VerifierKey, EMPTY_ROOT};

use crate::entry::*;
use crate::envelope::{key_id, Envelope};
use crate::error::{FoldError, Rule};
use crate::state::*;
use crate::trust_root::{Role, TrustRoot, TrustRootDoc};

/// One entry being judged: the state before it, its envelope, the trust
/// root in force and the trust-root keys whose signatures verified (once
/// per entry: a known key whose signature fails has already refused it).
struct Judge<'a> {
    state: &'a State,
    index: u64,
    env: &'a Envelope,
    root: &'a TrustRoot,
    verified: Vec<String>,
    id: String,
}

impl State {
    /// What `bytes` would do to this state, or the rule it breaks.
    pub(crate) fn check_effect(&self, bytes: &[u8]) -> Result<Effect, FoldError> {
        let index = self.size;
        let fail = |rule: Rule, detail: String| FoldError::new(index, rule, detail);
        let env = Envelope::parse(bytes).map_err(|e| FoldError::from((index, e)))?;
        let value = crate::canonical::parse_canonical_msg(&env.payload).map_err(|e| fail(Rule::Entry, e))?;
        let payload = Payload::decode(value).map_err(|e| FoldError::from((index, e)))?;
        let id = payload_id(&env.payload);
        let Some(root) = self.trust_root() else {
            return genesis(self, bytes, &env, payload, index);
        };
        let verified = env
            .verified_keys(|k| root.key(k))
            .map_err(|e| FoldError::from((index, e)))?;
        let j = Judge {
            state: self,
            index,
            env: &env,
            root,
            verified,
            id,
        };
        match payload {
            Payload::TrustRoot(doc) => j.trust_root_update(doc),
            Payload::Model(m) => j.model(m),
            Payload::Approval(a) => j.approval(a),
            Payload::Revocation(r) => j.revocation(r),
            Payload::Exception(x) => j.exception(x),
            Payload::PolicySet(p) => j.policy_set(p),
            Payload::NodeEnrollment(n) => j.node_enrollment(n),
            Payload::NodeAnchor(a) => j.node_anchor(a),
            Payload::ContainmentReport(r) => j.containment_report(r),
        }
    }
}

/// Entry 0: exactly the pinned trust root, signed by its own threshold.
fn genesis(state: &State, bytes: &[u8], env: &Envelope, payload: Payload, index: u64) -> Result<Effect, FoldError> {
    let fail = |rule: Rule, detail: String| FoldError::new(index, rule, detail);
    // Genesis: exactly the pinned trust root, signed by its own threshold.
    if bytes != state.pinned.as_slice() {
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
    Ok(Effect::TrustRoot(TrustRootRecord {
        doc,
        index,
        parsed: Arc::new(new),
    }))
}

impl<'a> Judge<'a> {
    fn fail(&self, rule: Rule, detail: String) -> FoldError {
        FoldError::new(self.index, rule, detail)
    }

    /// The principals with `role` whose signatures verified.
    fn signers_with(&self, role: Role) -> Result<BTreeSet<String>, FoldError> {
        Ok(self.root.principals_with(&self.verified, role))
    }

    fn need(&self, who: &BTreeSet<String>, threshold: u64, what: &str) -> Result<(), FoldError> {
        if (who.len() as u64) < threshold {
            return Err(self.fail(
                Rule::Threshold,
                format!(
                    "{what} needs {threshold} distinct signers with the role; {} signed ({who:?})",
                    who.len()
                ),
            ));
        }
        Ok(())
    }

    /// A free-text field: present when `required`, bounded, and text only.
    fn text(&self, field: &str, value: &str, required: bool) -> Result<(), FoldError> {
        if required && value.trim().is_empty() {
            let rule = if field == "ticket" { Rule::Ticket } else { Rule::Entry };
            return Err(self.fail(rule, format!("{field} must not be empty")));
        }
        if value.len() > TEXT_BYTES_MAX {
            return Err(self.fail(Rule::Entry, format!("{field} is longer than {TEXT_BYTES_MAX} bytes")));
        }
        let lines = matches!(field, "reason" | "detail");
        text_msg(value, lines).map_err(|e| self.fail(Rule::Text, format!("{field}: {e}")))
    }

    fn patterns(&self, scopes: &[String]) -> Result<(), FoldError> {
        if scopes.is_empty() {
            return Err(self.fail(Rule::ScopeGrammar, "at least one scope pattern is required".into()));
        }
        for s in scopes {
            crate::scope::pattern_msg(s).map_err(|e| self.fail(Rule::ScopeGrammar, e))?;
        }
        Ok(())
    }

    /// A registered model that is not revoked.
    fn live_model(&self, digest: &str) -> Result<&'a ModelRecord, FoldError> {
        if !is_digest(digest) {
            return Err(self.fail(
                Rule::Entry,
                format!("model {digest:?} is not a 64-hex-digit root digest"),
            ));
        }
        let state: &'a State = self.state;
        let m = state
            .models
            .get(digest)
            .ok_or_else(|| self.fail(Rule::ModelUnknown, format!("model {digest} is not registered")))?;
        if state.revocations.contains_key(digest) {
            return Err(self.fail(Rule::ModelRevoked, format!("model {digest} is revoked")));
        }
        Ok(m)
    }

    /// No one who signed the model signs this entry.
    fn separation(&self, model: &ModelRecord) -> Result<(), FoldError> {
        let signing: BTreeSet<String> = self
            .verified
            .iter()
            .filter_map(|k| self.root.principal_of(k))
            .map(str::to_owned)
            .collect();
        let both: Vec<&String> = signing.intersection(&model.signers).collect();
        if !both.is_empty() {
            return Err(self.fail(
                Rule::SeparationOfDuties,
                format!("{both:?} signed model {} and may not approve it", model.digest),
            ));
        }
        Ok(())
    }

    fn node_key(&self, node: &NodeRecord) -> Result<VerifierKey, FoldError> {
        VerifierKey::parse(&node.key).map_err(|e| self.fail(Rule::AnchorInvalid, format!("node key: {e}")))
    }

    fn signed_by_node(&self, key: &VerifierKey) -> Result<(), FoldError> {
        let vk: VerifyingKey = *key.public_key();
        let kid = key_id(&vk);
        let verified = self
            .env
            .verified_keys(|k| (k == kid).then_some(vk))
            .map_err(|e| FoldError::from((self.index, e)))?;
        if verified.is_empty() {
            return Err(self.fail(Rule::Threshold, "the entry is not signed by the node's key".into()));
        }
        Ok(())
    }

    /// A new version of the trust root: the next version, signed by the threshold of the current root principals and of the new ones.
    fn trust_root_update(&self, doc: TrustRootDoc) -> Result<Effect, FoldError> {
        let new = TrustRoot::from_doc_msg(doc.clone()).map_err(|e| self.fail(Rule::TrustRootInvalid, e))?;
        let old_version = self.root.doc.root_version;
        if doc.root_version != old_version + 1 {
            return Err(self.fail(
                Rule::TrustRootVersion,
                format!(
                    "trust root version {} after {old_version}: only {} is accepted",
                    doc.root_version,
                    old_version + 1
                ),
            ));
        }
        let old_ok = self
            .env
            .verified_keys(|k| self.root.key(k))
            .map_err(|e| FoldError::from((self.index, e)))?;
        let new_ok = self
            .env
            .verified_keys(|k| new.key(k))
            .map_err(|e| FoldError::from((self.index, e)))?;
        let old_roots = self.root.principals_with(&old_ok, Role::Root);
        let new_roots = new.principals_with(&new_ok, Role::Root);
        if (old_roots.len() as u64) < self.root.doc.thresholds.root
            || (new_roots.len() as u64) < new.doc.thresholds.root
        {
            return Err(self.fail(
                Rule::TrustRootThreshold,
                format!(
                    "needs {} of the current root principals and {} of the new ones; signed by {} and {}",
                    self.root.doc.thresholds.root,
                    new.doc.thresholds.root,
                    old_roots.len(),
                    new_roots.len()
                ),
            ));
        }
        Ok(Effect::TrustRoot(TrustRootRecord {
            doc,
            index: self.index,
            parsed: Arc::new(new),
        }))
    }

    /// A model registration: its OMS bundle verifies under a model signer's key, signed by the model-signer threshold, not registered before.
    fn model(&self, m: ModelEntry) -> Result<Effect, FoldError> {
        let signers = self.signers_with(Role::ModelSigner)?;
        self.need(&signers, self.root.doc.thresholds.model, "a model registration")?;
        self.text("model_name", &m.model_name, true)?;
        self.text("model_version", &m.model_version, true)?;
        let bundle = B64
            .decode(&m.bundle)
            .map_err(|_| self.fail(Rule::Entry, "bundle is not base64".into()))?;
        let (oms_signers, signature) = self.root.model_signers(&bundle).map_err(|last| {
            self.fail(
                Rule::ModelSignature,
                format!("the OMS bundle does not verify with any model signer's key or keyless identity: {last}"),
            )
        })?;
        let digest = hex::encode(signature.manifest.root_digest());
        if self.state.models.contains_key(&digest) {
            return Err(self.fail(Rule::ModelDuplicate, format!("model {digest} is already registered")));
        }
        let signers = signers.union(&oms_signers).cloned().collect();
        Ok(Effect::Model(Arc::new(ModelRecord {
            digest: digest.into(),
            name: m.model_name,
            version: m.model_version,
            signers,
            index: self.index,
            keyless: signature.keyless,
        })))
    }

    /// An approval: a live model, no signer of the model among its approvers, valid scopes, a ticket and a window, the tier's threshold, not in the log before.
    fn approval(&self, a: ApprovalEntry) -> Result<Effect, FoldError> {
        let model = self.live_model(&a.model)?;
        self.separation(model)?;
        self.patterns(&a.scopes)?;
        self.text("ticket", &a.ticket, true)?;
        if a.valid_from >= a.valid_until {
            return Err(self.fail(
                Rule::TimeWindow,
                format!(
                    "valid_from {} is not before valid_until {}",
                    a.valid_from, a.valid_until
                ),
            ));
        }
        let approvers = self.signers_with(Role::Approver)?;
        self.need(
            &approvers,
            self.root.approval_threshold(a.risk_tier),
            &format!("a {} approval", a.risk_tier.as_str()),
        )?;
        if self.state.approvals.contains_key(self.id.as_str()) {
            return Err(self.fail(Rule::Duplicate, format!("approval {} is already in the log", self.id)));
        }
        Ok(Effect::Approval(Arc::new(ApprovalRecord {
            id: self.id.clone().into(),
            model: Arc::clone(&model.digest),
            scopes: a.scopes,
            valid_from: a.valid_from,
            valid_until: a.valid_until,
            risk_tier: a.risk_tier,
            ticket: a.ticket,
            approvers: approvers.into_iter().collect(),
            index: self.index,
        })))
    }

    /// A revocation: a live model, a ticket and a reason, the revocation threshold.
    fn revocation(&self, r: RevocationEntry) -> Result<Effect, FoldError> {
        self.live_model(&r.model)?;
        self.text("ticket", &r.ticket, true)?;
        self.text("reason", &r.reason, true)?;
        let revokers = self.signers_with(Role::Approver)?;
        self.need(&revokers, self.root.doc.thresholds.revocation, "a revocation")?;
        Ok(Effect::Revocation(Arc::new(RevocationRecord {
            model: r.model,
            reason: r.reason,
            ticket: r.ticket,
            revokers: revokers.into_iter().collect(),
            index: self.index,
        })))
    }

    /// An exception: as an approval, with a reason and an expiry.
    fn exception(&self, x: ExceptionEntry) -> Result<Effect, FoldError> {
        let model = self.live_model(&x.model)?;
        self.separation(model)?;
        self.patterns(&x.scopes)?;
        self.text("ticket", &x.ticket, true)?;
        self.text("reason", &x.reason, true)?;
        if x.expires == 0 {
            return Err(self.fail(Rule::TimeWindow, "an exception needs an expiry".into()));
        }
        let approvers = self.signers_with(Role::Approver)?;
        self.need(&approvers, self.root.doc.thresholds.exception, "an exception")?;
        if self.state.exceptions.contains_key(self.id.as_str()) {
            return Err(self.fail(Rule::Duplicate, format!("exception {} is already in the log", self.id)));
        }
        Ok(Effect::Exception(Arc::new(ExceptionRecord {
            id: self.id.clone().into(),
            model: Arc::clone(&model.digest),
            scopes: x.scopes,
            expires: x.expires,
            risk_tier: x.risk_tier,
            ticket: x.ticket,
            reason: x.reason,
            approvers: approvers.into_iter().collect(),
            index: self.index,
        })))
    }

    /// A policy set: the policy admins' threshold, Cedar that compiles, no bidirectional controls, replacing exactly the set in force.
    fn policy_set(&self, p: PolicySetEntry) -> Result<Effect, FoldError> {
        let admins = self.signers_with(Role::PolicyAdmin)?;
        self.need(&admins, self.root.doc.thresholds.policy, "a policy set")?;
        self.text("name", &p.name, true)?;
        if let Some(c) = p.policies.chars().find(|c| is_bidi_control(*c)) {
            return Err(self.fail(
                Rule::Text,
                format!(
                    "policies hold the bidirectional control U+{:04X}, which can make policy text read otherwise than it runs",
                    u32::from(c)
                ),
            ));
        }
        let compiled = crate::policy::compile_msg(&p.policies).map_err(|e| self.fail(Rule::PolicyInvalid, e))?;
        let in_force = self.state.policy.as_ref().map_or("", |p| p.id.as_str());
        if p.replaces != in_force {
            let what = if in_force.is_empty() {
                "no policy set is in force, so replaces must be empty".to_owned()
            } else {
                format!("the policy set in force is {in_force}")
            };
            return Err(self.fail(
                Rule::Replay,
                format!("the policy set replaces {:?}, but {what}", p.replaces),
            ));
        }
        Ok(Effect::Policy(PolicyRecord {
            id: self.id.clone(),
            name: p.name,
            text: p.policies,
            admins: admins.into_iter().collect(),
            index: self.index,
            compiled,
        }))
    }

    /// A node enrollment: the node admins' threshold, a well-formed id and Ed25519 note key, valid scopes, not enrolled before.
    fn node_enrollment(&self, n: NodeEnrollmentEntry) -> Result<Effect, FoldError> {
        let admins = self.signers_with(Role::NodeAdmin)?;
        self.need(&admins, self.root.doc.thresholds.enrollment, "a node enrollment")?;
        if n.node.is_empty() || n.node.len() > 128 || n.node.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.fail(
                Rule::Entry,
                format!("node id {:?} is empty, too long or has spaces", n.node),
            ));
        }
        let key = VerifierKey::parse(&n.key).map_err(|e| self.fail(Rule::Entry, format!("node key: {e}")))?;
        if key.key_type() != KeyType::Ed25519 {
            return Err(self.fail(Rule::Entry, "a node key must be an Ed25519 (0x01) note key".into()));
        }
        for s in &n.scopes {
            crate::scope::pattern_msg(s).map_err(|e| self.fail(Rule::ScopeGrammar, e))?;
        }
        if self.state.nodes.contains_key(&n.node) {
            return Err(self.fail(Rule::NodeDuplicate, format!("node {} is already enrolled", n.node)));
        }
        Ok(Effect::Node(NodeRecord {
            id: n.node,
            key: n.key,
            scopes: n.scopes,
            index: self.index,
            anchor: None,
            last_report: None,
            reports: 0,
        }))
    }

    /// A node's anchor: signed by the node, its lineage checkpoint signed by it, larger than and consistent with the last anchor.
    fn node_anchor(&self, a: NodeAnchorEntry) -> Result<Effect, FoldError> {
        let node = self
            .state
            .nodes
            .get(&a.node)
            .ok_or_else(|| self.fail(Rule::NodeUnknown, format!("node {} is not enrolled", a.node)))?;
        let key = self.node_key(node)?;
        self.signed_by_node(&key)?;
        let policy =
            CheckpointPolicy::new(key, vec![], 0).map_err(|e| self.fail(Rule::AnchorInvalid, e.to_string()))?;
        let cp = policy
            .verify(a.checkpoint.as_bytes())
            .map_err(|e| self.fail(Rule::AnchorInvalid, format!("lineage checkpoint: {e}")))?;
        let (old_size, old_root) = match &node.anchor {
            Some(prev) => {
                let raw = hex_to_hash(&prev.root)
                    .ok_or_else(|| self.fail(Rule::AnchorInvalid, "stored anchor root".into()))?;
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
                self.fail(
                    Rule::AnchorInvalid,
                    "consistency proof hashes must be base64 SHA-256".into(),
                )
            })?;
        let new = &cp.checkpoint;
        // An anchor only moves forward: the same anchor posted again
        // (it is public in the log) must not be appended again.
        if new.size <= old_size {
            return Err(self.fail(
                Rule::Replay,
                format!(
                    "lineage log size {} is not above the anchored size {old_size}",
                    new.size
                ),
            ));
        }
        verify_consistency(old_size, new.size, &proof, &old_root, &new.root).map_err(|e| {
            self.fail(
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
                index: self.index,
            },
        ))
    }

    /// A node's containment report: signed by the node, a sequence above its last, digests that are digests.
    fn containment_report(&self, r: ContainmentReportEntry) -> Result<Effect, FoldError> {
        let node = self
            .state
            .nodes
            .get(&r.node)
            .ok_or_else(|| self.fail(Rule::NodeUnknown, format!("node {} is not enrolled", r.node)))?;
        self.signed_by_node(&self.node_key(node)?)?;
        self.text("detail", &r.detail, false)?;
        if let Some(prev) = &node.last_report {
            if r.sequence <= prev.sequence {
                return Err(self.fail(
                    Rule::Replay,
                    format!(
                        "report sequence {} is not above node {}'s previous report's ({})",
                        r.sequence, r.node, prev.sequence
                    ),
                ));
            }
        }
        if let Some(bad) = r.models.iter().find(|m| !is_digest(m)) {
            return Err(self.fail(Rule::Entry, format!("model {bad:?} is not a root digest")));
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
                index: self.index,
            },
        ))
    }
}
