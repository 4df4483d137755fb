//! The fold's rules and the decision's reason codes, table-driven.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use modelgate_governance::*;
use serde_json::json;

fn fold_all(w: &World, entries: &[Vec<u8>]) -> Result<State, FoldError> {
    fold(&w.genesis(), entries.iter().map(Vec::as_slice))
}

/// Assert that appending `entry` after `log` fails with `rule` at the right index.
fn refused(w: &World, log: &[Vec<u8>], entry: Vec<u8>, rule: Rule) -> FoldError {
    let mut all = log.to_vec();
    all.push(entry);
    let e = fold_all(w, &all).expect_err("the fold must refuse the entry");
    assert_eq!((e.index, e.rule), (log.len() as u64, rule), "{e}");
    // The same verdict without folding: check() on the state before it.
    let state = fold_all(w, log).unwrap();
    assert_eq!(state.check(all.last().unwrap()).unwrap_err().rule, rule);
    e
}

struct Base {
    log: Vec<Vec<u8>>,
    m1: String,
    m2: String,
}

/// genesis, M1 (pipeline), M2 (dave), policies, node-1 for prod/*, a low
/// approval of M1 for prod/credit/* and prod/forbidden/* in [1000, 2000).
fn base(w: &World) -> Base {
    let (e1, m1) = w.model("one", 70, &w.pipeline);
    let (e2, m2) = w.model("two", 71, &w.dave);
    let log = vec![
        w.genesis(),
        e1,
        e2,
        w.policy(PERMIT_ALL),
        w.enroll("node-1", &["prod/*"]),
        w.approval(
            &m1,
            &["prod/credit/*", "prod/forbidden/*"],
            (1000, 2000),
            "low",
            "CHG-1",
            &[&w.alice],
        ),
    ];
    Base { log, m1, m2 }
}

fn request(model: &str, scope: &str, node: &str) -> DecisionRequest {
    DecisionRequest {
        model: model.into(),
        scope: scope.into(),
        node: node.into(),
        principal: "svc-credit".into(),
        groups: vec!["credit".into()],
        attributes: vec![("department".into(), "risk".into())],
    }
}

#[test]
fn every_reason_code() {
    let w = World::new();
    let b = base(&w);
    let state = fold_all(&w, &b.log).unwrap();
    let ghost = "ab".repeat(32);
    let cases: Vec<(&str, DecisionRequest, u64, ReasonCode, bool)> = vec![
        (
            "approved",
            request(&b.m1, "prod/credit/scoring", "node-1"),
            1500,
            ReasonCode::Approved,
            true,
        ),
        (
            "window start is inclusive",
            request(&b.m1, "prod/credit/scoring", "node-1"),
            1000,
            ReasonCode::Approved,
            true,
        ),
        (
            "not yet valid",
            request(&b.m1, "prod/credit/scoring", "node-1"),
            999,
            ReasonCode::ApprovalNotYetValid,
            false,
        ),
        (
            "expired (end is exclusive)",
            request(&b.m1, "prod/credit/scoring", "node-1"),
            2000,
            ReasonCode::ApprovalExpired,
            false,
        ),
        (
            "wrong scope",
            request(&b.m1, "prod/marketing/x", "node-1"),
            1500,
            ReasonCode::ScopeNotApproved,
            false,
        ),
        (
            "pattern is not a prefix match",
            request(&b.m1, "prod/credit", "node-1"),
            1500,
            ReasonCode::ScopeNotApproved,
            false,
        ),
        (
            "no approval",
            request(&b.m2, "prod/credit/scoring", "node-1"),
            1500,
            ReasonCode::NoApproval,
            false,
        ),
        (
            "unknown model",
            request(&ghost, "prod/credit/scoring", "node-1"),
            1500,
            ReasonCode::UnknownModel,
            false,
        ),
        (
            "node not enrolled",
            request(&b.m1, "prod/credit/scoring", "node-9"),
            1500,
            ReasonCode::NodeNotEnrolled,
            false,
        ),
        (
            "node scope",
            request(&b.m1, "staging/credit/x", "node-1"),
            1500,
            ReasonCode::NodeScope,
            false,
        ),
        (
            "bad scope",
            request(&b.m1, "Prod/Credit", "node-1"),
            1500,
            ReasonCode::InvalidRequest,
            false,
        ),
        (
            "policy forbids",
            request(&b.m1, "prod/forbidden/x", "node-1"),
            1500,
            ReasonCode::PolicyDeny,
            false,
        ),
    ];
    for (what, req, now, code, allow) in cases {
        let d = decide(&state, &req, now);
        assert_eq!((d.reasons.as_slice(), d.allow), (&[code][..], allow), "{what}: {d:?}");
        assert_eq!(d.state_digest, state.digest());
        assert_eq!(d.state_size, 6);
    }
    let d = decide(&state, &request(&b.m1, "prod/credit/scoring", "node-1"), 1500);
    assert_eq!(d.policies, vec!["permit-all".to_string()]);
    assert_eq!(
        d.approval.as_deref(),
        Some(state.approvals.keys().next().unwrap().as_ref())
    );
    assert_eq!((d.valid_from, d.valid_until), (1000, 2000));
    let d = decide(&state, &request(&b.m1, "prod/forbidden/x", "node-1"), 1500);
    assert_eq!(d.policies, vec!["no-forbidden-scopes".to_string()]);

    // No policy set yet: deny.
    let mut early = b.log.clone();
    early.remove(3);
    let s = fold_all(&w, &early).unwrap();
    let d = decide(&s, &request(&b.m1, "prod/credit/scoring", "node-1"), 1500);
    assert_eq!(d.reasons, vec![ReasonCode::NoPolicySet]);

    // A revocation beats the approval from its index on.
    let mut log = b.log.clone();
    log.push(w.revocation(&b.m1));
    let s = fold_all(&w, &log).unwrap();
    assert_eq!(
        decide(&s, &request(&b.m1, "prod/credit/scoring", "node-1"), 1500).reasons,
        vec![ReasonCode::Revoked]
    );
    // ... and nothing can be granted to a revoked model afterwards.
    refused(
        &w,
        &log,
        w.approval(&b.m1, &["prod/*"], (0, 9999), "low", "CHG-2", &[&w.bob]),
        Rule::ModelRevoked,
    );

    // An exception lets M2 run (basis: exception), until it expires; policies still apply.
    let mut log = b.log.clone();
    log.push(w.exception(&b.m2, &["prod/*"], 3000, "INC-1"));
    let s = fold_all(&w, &log).unwrap();
    let d = decide(&s, &request(&b.m2, "prod/credit/x", "node-1"), 1500);
    assert_eq!(
        (d.allow, d.reasons.as_slice()),
        (true, &[ReasonCode::Exception][..]),
        "{d:?}"
    );
    assert!(d.exception.is_some() && d.approval.is_none());
    assert_eq!(
        decide(&s, &request(&b.m2, "prod/credit/x", "node-1"), 3000).reasons,
        vec![ReasonCode::ApprovalExpired]
    );
    let d = decide(&s, &request(&b.m2, "prod/payments/x", "node-1"), 1500);
    assert_eq!(
        (d.reasons.as_slice(), d.policies.as_slice()),
        (
            &[ReasonCode::PolicyDeny][..],
            &["no-exceptions-in-payments".to_string()][..]
        )
    );
}

#[test]
fn a_cedar_evaluation_error_denies_even_where_cedar_would_allow() {
    let w = World::new();
    let b = base(&w);
    // The forbid reads an attribute of an entity that does not exist: Cedar
    // reports an error and skips the forbid, so its own decision is Allow.
    let erroring = r#"
        @id("permit-all") permit(principal, action, resource);
        @id("broken-forbid") forbid(principal, action, resource) when { Model::"ghost".name == "x" };
    "#;
    let mut log = b.log.clone();
    log.push(w.policy_after(erroring, &b.log[3]));
    let s = fold_all(&w, &log).unwrap();
    let d = decide(&s, &request(&b.m1, "prod/credit/scoring", "node-1"), 1500);
    assert_eq!(
        (d.allow, d.reasons.as_slice()),
        (false, &[ReasonCode::PolicyError][..]),
        "{d:?}"
    );
    assert!(d.detail.contains("broken-forbid"), "{}", d.detail);
}

#[test]
fn tags_and_groups_reach_the_policies() {
    let w = World::new();
    let b = base(&w);
    let text = r#"
        @id("risk-dept") permit(principal in Group::"credit", action, resource)
          when { principal.hasTag("department") && principal.getTag("department") == "risk" && resource.risk_tier == "low" };
    "#;
    let mut log = b.log.clone();
    log.push(w.policy_after(text, &b.log[3]));
    let s = fold_all(&w, &log).unwrap();
    let mut r = request(&b.m1, "prod/credit/scoring", "node-1");
    assert!(decide(&s, &r, 1500).allow);
    r.attributes = vec![("department".into(), "sales".into())];
    assert_eq!(decide(&s, &r, 1500).reasons, vec![ReasonCode::PolicyDeny]);
    r.attributes = vec![("department".into(), "risk".into())];
    r.groups = vec![];
    assert_eq!(decide(&s, &r, 1500).reasons, vec![ReasonCode::PolicyDeny]);
}

#[test]
fn separation_of_duties_and_thresholds() {
    let w = World::new();
    let b = base(&w);
    // dave signed M2: his approval of it is refused, alone or with others.
    refused(
        &w,
        &b.log,
        w.approval(&b.m2, &["prod/*"], (0, 10), "low", "T", &[&w.dave]),
        Rule::SeparationOfDuties,
    );
    refused(
        &w,
        &b.log,
        w.approval(&b.m2, &["prod/*"], (0, 10), "high", "T", &[&w.alice, &w.dave]),
        Rule::SeparationOfDuties,
    );
    // The pipeline registered M1 (and signed its bundle): it may not approve it either.
    refused(
        &w,
        &b.log,
        w.approval(&b.m1, &["prod/*"], (0, 10), "low", "T", &[&w.pipeline]),
        Rule::SeparationOfDuties,
    );
    // Nor grant it an exception.
    let x = sign(
        &json!({"type": "exception", "version": 1, "model": b.m2, "scopes": ["prod/*"], "expires": 5,
                "risk_tier": "low", "ticket": "T", "reason": "r"}),
        &[&w.dave],
    );
    refused(&w, &b.log, x, Rule::SeparationOfDuties);
    // A high approval needs two approvers; critical three.
    refused(
        &w,
        &b.log,
        w.approval(&b.m2, &["prod/*"], (0, 10), "high", "T", &[&w.alice]),
        Rule::Threshold,
    );
    let mut ok = b.log.clone();
    ok.push(w.approval(&b.m2, &["prod/*"], (0, 10), "high", "T", &[&w.alice, &w.bob]));
    fold_all(&w, &ok).unwrap();
    refused(
        &w,
        &b.log,
        w.approval(&b.m2, &["prod/*"], (0, 10), "critical", "T", &[&w.alice, &w.bob]),
        Rule::Threshold,
    );
    // Signers without the role do not count.
    refused(
        &w,
        &b.log,
        w.approval(&b.m2, &["prod/*"], (0, 10), "low", "T", &[&w.padmin]),
        Rule::Threshold,
    );
    refused(&w, &b.log, w.policy_signed_by(&[&w.alice]), Rule::Threshold);
    // A model whose bundle no trusted model key signed.
    let (bad_model, _) = w.model("three", 99, &w.pipeline);
    refused(&w, &b.log, bad_model, Rule::ModelSignature);
    // The same model twice.
    let (again, _) = w.model("one", 70, &w.pipeline);
    refused(&w, &b.log, again, Rule::ModelDuplicate);
}

impl PolicyBy for World {}
trait PolicyBy {
    fn policy_signed_by(&self, keys: &[&ed25519_dalek::SigningKey]) -> Vec<u8> {
        sign(
            &json!({"type": "policy-set", "version": 2, "name": "p", "policies": PERMIT_ALL, "replaces": ""}),
            keys,
        )
    }
}

#[test]
fn entry_rules() {
    let w = World::new();
    let b = base(&w);
    let m = &b.m1;
    refused(
        &w,
        &b.log,
        w.approval(m, &["prod/*"], (10, 10), "low", "T", &[&w.alice]),
        Rule::TimeWindow,
    );
    refused(
        &w,
        &b.log,
        w.approval(m, &["prod/*"], (0, 10), "low", " ", &[&w.alice]),
        Rule::Ticket,
    );
    refused(
        &w,
        &b.log,
        w.approval(m, &["Prod/*"], (0, 10), "low", "T", &[&w.alice]),
        Rule::ScopeGrammar,
    );
    refused(
        &w,
        &b.log,
        w.approval(m, &[], (0, 10), "low", "T", &[&w.alice]),
        Rule::ScopeGrammar,
    );
    refused(
        &w,
        &b.log,
        w.approval(&"cd".repeat(32), &["prod/*"], (0, 10), "low", "T", &[&w.alice]),
        Rule::ModelUnknown,
    );
    refused(&w, &b.log, w.exception(m, &["prod/*"], 0, "T"), Rule::TimeWindow);
    refused(&w, &b.log, w.exception(m, &["prod/*"], 10, ""), Rule::Ticket);
    refused(&w, &b.log, b.log[5].clone(), Rule::Duplicate);
    refused(&w, &b.log, w.enroll("node-1", &["prod/*"]), Rule::NodeDuplicate);
    // Policies that do not validate against the strict schema.
    refused(
        &w,
        &b.log,
        w.policy(r#"permit(principal, action, resource) when { resource.colour == "red" };"#),
        Rule::PolicyInvalid,
    );
    refused(
        &w,
        &b.log,
        w.policy("permit(principal, action, resource"),
        Rule::PolicyInvalid,
    );
    refused(&w, &b.log, w.policy(""), Rule::PolicyInvalid);
    refused(
        &w,
        &b.log,
        w.policy(r#"@id("a") permit(principal, action, resource); @id("a") permit(principal, action, resource);"#),
        Rule::PolicyInvalid,
    );
    // Unknown types and versions are refused, never skipped.
    refused(
        &w,
        &b.log,
        sign(&json!({"type": "model-v2", "version": 1}), &[&w.alice]),
        Rule::UnknownEntry,
    );
    refused(
        &w,
        &b.log,
        sign(
            &json!({"type": "revocation", "version": 2, "model": m, "reason": "r", "ticket": "t"}),
            &[&w.bob],
        ),
        Rule::UnknownEntry,
    );
    // Unknown fields in a signed document are refused.
    refused(
        &w,
        &b.log,
        sign(
            &json!({"type": "revocation", "version": 1, "model": m, "reason": "r", "ticket": "t", "note": "x"}),
            &[&w.bob],
        ),
        Rule::Entry,
    );
    // Non-canonical envelope (whitespace added) and a tampered payload.
    let mut spaced = b"{ ".to_vec();
    spaced.extend_from_slice(&w.revocation(m)[1..]);
    refused(&w, &b.log, spaced, Rule::Entry);
    let good = w.revocation(m);
    let mut env: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let payload = sign(
        &json!({"type": "revocation", "version": 1, "model": m, "reason": "other", "ticket": "INC-9"}),
        &[&w.bob],
    );
    let other: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    env["payload"] = other["payload"].clone();
    let forged = to_canonical(&env).unwrap();
    let e = refused(&w, &b.log, forged, Rule::Entry);
    assert!(e.detail.contains("does not verify"), "{e}");
    // The error names the index.
    assert!(e.to_string().starts_with("entry 6: rule entry:"), "{e}");
}

#[test]
fn genesis_must_be_the_pinned_root() {
    let w = World::new();
    let other = sign(&w.root_doc(1, &[&w.root1, &w.root2]), &[&w.root1, &w.root2, &w.root3]);
    let e = fold(&w.genesis(), [other.as_slice()]).unwrap_err();
    assert_eq!((e.index, e.rule), (0, Rule::Genesis));
    // A pinned root below its own threshold is refused up front.
    let weak = sign(&w.root_doc(1, &[&w.root1, &w.root2]), &[&w.root1]);
    assert_eq!(State::new(&weak).unwrap_err().rule, Rule::TrustRootThreshold);
    // Version 2 cannot be a genesis.
    let v2 = sign(&w.root_doc(2, &[&w.root1, &w.root2]), &[&w.root1, &w.root2]);
    assert_eq!(State::new(&v2).unwrap_err().rule, Rule::TrustRootVersion);
}

#[test]
fn trust_root_rotation_needs_both_thresholds_and_never_goes_back() {
    let w = World::new();
    let g = w.genesis();
    // v2 replaces root1 by root3; threshold stays 2.
    let doc2 = w.root_doc(2, &[&w.root2, &w.root3]);
    let log = vec![g.clone()];
    refused(&w, &log, sign(&doc2, &[&w.root1]), Rule::TrustRootThreshold);
    refused(&w, &log, sign(&doc2, &[&w.root1, &w.root2]), Rule::TrustRootThreshold); // new side: root2 only
    refused(&w, &log, sign(&doc2, &[&w.root2, &w.root3]), Rule::TrustRootThreshold); // old side: root2 only
    let v2 = sign(&doc2, &[&w.root1, &w.root2, &w.root3]);
    let mut log = vec![g.clone(), v2.clone()];
    let s = fold_all(&w, &log).unwrap();
    assert_eq!(s.trust_root().unwrap().doc.root_version, 2);
    // Rollback to v1, a replay of v2 and a skip to v4 are all refused.
    refused(&w, &log, g.clone(), Rule::TrustRootVersion);
    refused(&w, &log, v2.clone(), Rule::TrustRootVersion);
    refused(
        &w,
        &log,
        sign(&w.root_doc(4, &[&w.root2, &w.root3]), &[&w.root2, &w.root3]),
        Rule::TrustRootVersion,
    );
    // After rotation root1 no longer counts.
    let doc3 = w.root_doc(3, &[&w.root2, &w.root3]);
    refused(&w, &log, sign(&doc3, &[&w.root1, &w.root2]), Rule::TrustRootThreshold);
    log.push(sign(&doc3, &[&w.root2, &w.root3]));
    fold_all(&w, &log).unwrap();
    // An invalid document (threshold above the root holders) is refused.
    let mut bad = w.root_doc(2, &[&w.root2, &w.root3]);
    bad["thresholds"]["root"] = json!(3);
    refused(
        &w,
        &[g],
        sign(&bad, &[&w.root1, &w.root2, &w.root3]),
        Rule::TrustRootInvalid,
    );
}

#[test]
fn node_anchors_must_be_signed_and_consistent() {
    use modelgate_tlog::*;
    let w = World::new();
    let b = base(&w);
    let mut tree = MemoryTree::new();
    let origin = w.node.name().to_owned();
    let anchor = |tree: &MemoryTree, from: u64, signer: &ed25519_dalek::SigningKey| {
        let cp = Checkpoint {
            origin: origin.clone(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        };
        let note = String::from_utf8(cp.sign(&w.node).unwrap().to_bytes()).unwrap();
        let proof: Vec<String> = consistency_proof(from, tree.size(), tree)
            .unwrap()
            .iter()
            .map(|h| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(h)
            })
            .collect();
        sign(
            &json!({"type": "node-anchor", "version": 1, "node": "node-1", "checkpoint": note, "consistency": proof}),
            &[signer],
        )
    };
    let node_gov = ed25519_dalek::SigningKey::from_bytes(&[50; 32]);
    for i in 0..3u8 {
        tree.append(leaf_hash(&[i]));
    }
    let mut log = b.log.clone();
    log.push(anchor(&tree, 0, &node_gov));
    for i in 3..7u8 {
        tree.append(leaf_hash(&[i]));
    }
    log.push(anchor(&tree, 3, &node_gov));
    let s = fold_all(&w, &log).unwrap();
    assert_eq!(s.nodes["node-1"].anchor.as_ref().unwrap().size, 7);
    // Signed by someone else: refused.
    refused(&w, &log, anchor(&tree, 7, &w.alice), Rule::Threshold);
    // A fork: another tree of size 9 that does not extend the anchored one.
    let mut fork = MemoryTree::new();
    for i in 100..109u8 {
        fork.append(leaf_hash(&[i]));
    }
    refused(&w, &log, anchor(&fork, 7, &node_gov), Rule::AnchorInvalid);
    // A shrinking log is a step back; the latest anchor posted again (anyone
    // can read it from the log) is a repeat: both refused.
    let mut small = MemoryTree::new();
    small.append(leaf_hash(&[0]));
    refused(&w, &log, anchor(&small, 0, &node_gov), Rule::Replay);
    refused(&w, &log, log.last().unwrap().clone(), Rule::Replay);
    // A containment report from the node is recorded.
    let report = |sequence: u64, recovered: bool, time: u64| {
        sign(
            &json!({"type": "containment-report", "version": 3, "node": "node-1", "sequence": sequence, "models": [b.m1],
                    "reason": "UnauthorizedModification", "check": "RuntimeIntegrityVerification",
                    "step": "IntegrityVerification", "detail": "weights.bin changed", "recovered": recovered, "time": time}),
            &[&node_gov],
        )
    };
    let recovered = report(5, true, 1000);
    log.push(recovered.clone());
    log.push(report(7, false, 1234));
    let s = fold_all(&w, &log).unwrap();
    let r = s.nodes["node-1"].last_report.as_ref().unwrap();
    assert_eq!(
        (r.reason, r.recovered, r.sequence, s.nodes["node-1"].reports),
        (ContainmentReason::UnauthorizedModification, false, 7, 2)
    );
    assert_eq!(
        (r.check, r.step),
        (
            modelgate_governance::Check::RuntimeIntegrityVerification,
            Some(modelgate_governance::LifecycleStep::IntegrityVerification)
        )
    );
    // The older "recovered" posted again after the newer containment: refused,
    // and so is a new report that does not move the sequence forward.
    refused(&w, &log, recovered, Rule::Replay);
    refused(&w, &log, report(7, true, 2000), Rule::Replay);
    refused(&w, &log, report(6, true, 2000), Rule::Replay);
    log.push(report(8, true, 2000));
    assert!(
        fold_all(&w, &log).unwrap().nodes["node-1"]
            .last_report
            .as_ref()
            .unwrap()
            .recovered
    );
    // Version 1 reports (no sequence) are no longer read: they could be replayed.
    let v1 = sign(
        &json!({"type": "containment-report", "version": 1, "node": "node-1", "models": [], "reason": "SyncInterrupted",
                "detail": "", "recovered": true, "time": 1}),
        &[&node_gov],
    );
    let e = refused(&w, &log, v1, Rule::UnknownEntry);
    assert!(e.detail.contains("reads version 3"), "{e}");
    // Nor version 2 (it did not name the check that failed), nor a v3 report
    // whose check is not one of the eight.
    let v2 = sign(
        &json!({"type": "containment-report", "version": 2, "node": "node-1", "sequence": 9, "models": [],
                "reason": "SyncInterrupted", "detail": "", "recovered": true, "time": 1}),
        &[&node_gov],
    );
    let e = refused(&w, &log, v2, Rule::UnknownEntry);
    assert!(e.detail.contains("reads version 3"), "{e}");
    let unknown_check = sign(
        &json!({"type": "containment-report", "version": 3, "node": "node-1", "sequence": 9, "models": [],
                "reason": "SyncInterrupted", "check": "Vibes", "step": null, "detail": "", "recovered": true, "time": 1}),
        &[&node_gov],
    );
    refused(&w, &log, unknown_check, Rule::Entry);
}

#[test]
fn a_policy_set_names_the_set_it_replaces_so_an_old_one_cannot_come_back() {
    let w = World::new();
    let b = base(&w);
    let first = b.log[3].clone();
    let deny_all = r#"@id("none") forbid(principal, action, resource);"#;
    let second = w.policy_after(deny_all, &first);
    let mut log = b.log.clone();
    log.push(second.clone());
    assert_eq!(fold_all(&w, &log).unwrap().policy.unwrap().name, "test policies");
    // Re-submitting the first set verbatim (it replaces nothing) does not put it back.
    let e = refused(&w, &log, first.clone(), Rule::Replay);
    assert!(e.detail.contains("the policy set in force is"), "{e}");
    // Nor does the second again, nor a set naming a set that is not in force.
    refused(&w, &log, second.clone(), Rule::Replay);
    refused(&w, &log, w.policy_after(PERMIT_ALL, &first), Rule::Replay);
    refused(&w, &log, w.policy_replacing(PERMIT_ALL, &"0".repeat(64)), Rule::Replay);
    // Replacing the set in force is accepted.
    log.push(w.policy_after(PERMIT_ALL, &second));
    assert!(fold_all(&w, &log).is_ok());
    // Version 1 policy sets (which name nothing) are not read.
    let v1 = sign(
        &json!({"type": "policy-set", "version": 1, "name": "p", "policies": PERMIT_ALL}),
        &[&w.padmin],
    );
    refused(&w, &log, v1, Rule::UnknownEntry);
    // Policy text with a bidirectional override (it can read otherwise than it runs).
    refused(
        &w,
        &b.log,
        w.policy_after("permit(principal, action, resource); // \u{202E} }", &first),
        Rule::Text,
    );
}

#[test]
fn free_text_refuses_controls_bidi_overrides_and_invisible_only_text() {
    let w = World::new();
    let b = base(&w);
    for bad in [
        "CHG\u{1b}[31m-1",
        "CHG-1\n",
        "CHG-\u{202E}1",
        "\u{200B}\u{200B}",
        " \u{FEFF} ",
        "\u{2066}x",
    ] {
        let e = refused(
            &w,
            &b.log,
            w.approval(&b.m1, &["prod/*"], (1000, 2000), "low", bad, &[&w.alice]),
            Rule::Text,
        );
        assert!(e.detail.starts_with("ticket: "), "{e}");
    }
    // Ordinary text, including non-Latin scripts and emoji with joiners, is fine.
    for good in ["CHG-1", "Änderung 7", "変更-42", "👩‍💻 review"] {
        let mut log = b.log.clone();
        log.push(w.approval(&b.m1, &["prod/*"], (1000, 2000), "low", good, &[&w.alice]));
        assert!(fold_all(&w, &log).is_ok(), "{good}");
    }
    // A revocation's reason may span lines, but holds no other control.
    let e = refused(&w, &b.log, w.revocation_with(&b.m1, "drift\u{7}", "INC-1"), Rule::Text);
    assert!(e.detail.starts_with("reason: "), "{e}");
    let mut log = b.log.clone();
    log.push(w.revocation_with(&b.m1, "drift\nsee the incident", "INC-1"));
    assert!(fold_all(&w, &log).is_ok());
}

#[test]
fn the_cache_never_outlives_its_state_or_window() {
    let w = World::new();
    let b = base(&w);
    let s1 = fold_all(&w, &b.log).unwrap();
    let mut cache = DecisionCache::new(1024);
    let r = request(&b.m1, "prod/credit/scoring", "node-1");
    assert!(cache.decide(&s1, &r, 1500).allow);
    assert_eq!(cache.len(), 1);
    let hit = cache.decide(&s1, &r, 1999);
    assert!(hit.allow);
    // Outside the window the cached allow is not used.
    assert_eq!(cache.decide(&s1, &r, 2000).reasons, vec![ReasonCode::ApprovalExpired]);
    // A new state (revocation) empties the cache: the old allow is gone.
    let mut log = b.log.clone();
    log.push(w.revocation(&b.m1));
    let s2 = fold_all(&w, &log).unwrap();
    assert_eq!(cache.decide(&s2, &r, 1500).reasons, vec![ReasonCode::Revoked]);
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_snapshot_restores_the_same_state_digest_and_decisions() {
    let w = World::new();
    let b = base(&w);
    let mut log = b.log.clone();
    log.push(w.revocation(&b.m2));
    let s = fold_all(&w, &log).unwrap();
    let bytes = s.snapshot().unwrap();
    let mut r = State::restore(&w.genesis(), &bytes).unwrap();
    assert_eq!((r.size, r.digest()), (s.size, s.digest()));
    let req = request(&b.m1, "prod/credit/scoring", "node-1");
    assert_eq!(decide(&r, &req, 1500), decide(&s, &req, 1500));
    // A working copy (no digest cache) has the same digest, and stays equal
    // when both take the same entry.
    let mut copy = s.working_copy();
    assert_eq!(copy.digest(), s.digest());
    let mut s2 = s.clone();
    let more = w.exception(&b.m1, &["prod/x/*"], 6000, "T-2");
    let checked = copy.check_entry(&more).unwrap();
    copy.commit_checked(checked.clone()).unwrap();
    s2.commit_checked(checked).unwrap();
    assert_eq!(copy.digest(), s2.digest());
    assert_ne!(copy.digest(), s.digest());
    // Folding on from the restored state is folding the whole log.
    let next = w.exception(&b.m1, &["prod/other/*"], 5000, "T-1");
    r.apply(&next).unwrap();
    log.push(next);
    assert_eq!(r.digest(), fold_all(&w, &log).unwrap().digest());
    // One changed field in the snapshot gives another digest (which the
    // authority compares with the one it recorded).
    let tampered = String::from_utf8(bytes).unwrap().replace("CHG-1", "CHG-2");
    let t = State::restore(&w.genesis(), tampered.as_bytes()).unwrap();
    assert_ne!(t.digest(), s.digest());
    // Unknown fields are refused, not skipped.
    let extra = String::from_utf8(s.snapshot().unwrap())
        .unwrap()
        .replacen('{', "{\"extra\":1,", 1);
    assert!(State::restore(&w.genesis(), extra.as_bytes()).is_err());
}
