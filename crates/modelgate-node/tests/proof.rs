//! The offline lineage-proof check on a proof a real gateway served (made by
//! the gateway test, kept as a fixture) and on a full-chain proof a real
//! authority served for a replicated call (made by `crates/modelgate/tests/
//! lineage.rs` with MODELGATE_FIXTURES): each verifies; every link changed is
//! refused, naming the link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_node::proof::{verify_lineage_proof, LineageProofError};
use serde_json::{json, Value};

const PROOF: &str = include_str!("data/lineage-proof.json");
const PINNED: &[u8] = include_bytes!("data/trust-root.dsse.json");

fn proof() -> Value {
    serde_json::from_str(PROOF).unwrap()
}

fn check(v: &Value) -> Result<modelgate_node::proof::VerifiedLineage, LineageProofError> {
    verify_lineage_proof(v.to_string().as_bytes(), PINNED)
}

/// Flip one byte of a base64 field.
fn flip_b64(v: &mut Value, pointer: &str) {
    let s = v.pointer(pointer).unwrap().as_str().unwrap();
    let mut raw = B64.decode(s).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 1;
    *v.pointer_mut(pointer).unwrap() = json!(B64.encode(raw));
}

#[test]
fn a_served_proof_verifies_and_every_changed_link_is_refused() {
    let ok = check(&proof()).unwrap();
    assert_eq!(ok.node, "node-1");
    assert_eq!(ok.records.len(), 2);
    assert_eq!(ok.records[0].1["type"], "request");
    assert_eq!(ok.records[1].1["type"], "completion");
    assert!(ok.lineage_size > ok.records[1].0);

    let invalid = |v: Value, needle: &str| match check(&v) {
        Err(LineageProofError::Invalid(m)) => assert!(m.contains(needle), "{needle}: {m}"),
        other => panic!("{needle}: {other:?}"),
    };
    let mut v = proof();
    flip_b64(&mut v, "/proof/records/0/entry");
    invalid(v, "is not in the node's checkpoint");
    let mut v = proof();
    flip_b64(&mut v, "/proof/records/1/inclusion/0");
    invalid(v, "is not in the node's checkpoint");
    let mut v = proof();
    v["proof"]["records"][0]["index"] = json!(v["proof"]["records"][0]["index"].as_u64().unwrap() + 1);
    invalid(v, "is not in the node's checkpoint");
    let mut v = proof();
    flip_b64(&mut v, "/proof/anchor/entry");
    invalid(v, "anchor entry");
    let mut v = proof();
    flip_b64(&mut v, "/proof/enrollment/entry");
    invalid(v, "enrollment entry");
    let mut v = proof();
    let note = v["proof"]["lineage_checkpoint"]
        .as_str()
        .unwrap()
        .replacen('\n', "\n1", 1);
    v["proof"]["lineage_checkpoint"] = json!(note);
    invalid(v, "lineage checkpoint");
    // The anchor and the enrollment swapped: each is the wrong kind of entry.
    let mut v = proof();
    let (a, e) = (v["proof"]["anchor"].clone(), v["proof"]["enrollment"].clone());
    v["proof"]["anchor"] = e;
    v["proof"]["enrollment"] = a;
    invalid(v, "not a node-enrollment");
    // The readable copy must say what the proven bytes say.
    let mut v = proof();
    v["records"][0]["record"]["principal"] = json!("someone-else");
    invalid(v, "readable copy");
    // Not anchored, and not a proof at all.
    invalid(json!({"anchored": false}), "not anchored");
    assert!(matches!(
        check(&json!({"format": "other"})),
        Err(LineageProofError::Malformed(_))
    ));
    assert!(matches!(
        verify_lineage_proof(b"\xff not json", PINNED),
        Err(LineageProofError::Malformed(_))
    ));
    // A pinned file that is not a trust root.
    assert!(verify_lineage_proof(PROOF.as_bytes(), b"{}").is_err());
}

const PROOF_V2: &str = include_str!("data/lineage-proof-v2.json");
const PINNED_V2: &[u8] = include_bytes!("data/trust-root-v2.dsse.json");

fn check_v2(v: &Value) -> Result<modelgate_node::proof::VerifiedLineage, LineageProofError> {
    verify_lineage_proof(v.to_string().as_bytes(), PINNED_V2)
}

#[test]
fn a_full_chain_proof_verifies_and_every_changed_governance_link_is_refused() {
    let proof = || -> Value { serde_json::from_str(PROOF_V2).unwrap() };
    let ok = check_v2(&proof()).unwrap();
    let links = ok.links.join("\n");
    for want in ["trust root version", "registered in entry", "approval", "policy set"] {
        assert!(links.contains(want), "{want:?} missing from {links}");
    }
    // The node's own proof (v1) proves no governance link.
    assert!(check(&serde_json::from_str(PROOF).unwrap()).unwrap().links.is_empty());

    let invalid = |v: Value, needle: &str| match check_v2(&v) {
        Err(LineageProofError::Invalid(m)) => assert!(m.contains(needle), "{needle}: {m}"),
        other => panic!("{needle}: {other:?}"),
    };
    for (pointer, needle) in [
        ("/proof/governance/trust_root/entry", "trust_root entry"),
        ("/proof/governance/registration/entry", "registration entry"),
        ("/proof/governance/grant/entry", "grant entry"),
        ("/proof/governance/policy/entry", "policy entry"),
    ] {
        let mut v = proof();
        flip_b64(&mut v, pointer);
        invalid(v, needle);
    }
    // Every governed entry against the one checkpoint.
    let mut v = proof();
    let other = v["proof"]["anchor"]["tlog_proof"]
        .as_str()
        .unwrap()
        .replacen("index ", "index 1", 1);
    v["proof"]["governance"]["policy"]["tlog_proof"] = json!(other);
    assert!(check_v2(&v).is_err());
    let mut v = proof();
    let cp = v["proof"]["governance"]["checkpoint"]
        .as_str()
        .unwrap()
        .replacen('\n', "\n1", 1);
    v["proof"]["governance"]["checkpoint"] = json!(cp);
    invalid(v, "another checkpoint");
    // Entries in each other's place: each is the wrong kind.
    let mut v = proof();
    v["proof"]["governance"]["registration"] = v["proof"]["governance"]["policy"].clone();
    invalid(v, "not a model registration");
    let mut v = proof();
    v["proof"]["governance"]["grant"] = v["proof"]["governance"]["registration"].clone();
    invalid(v, "not");
    let mut v = proof();
    v["proof"]["governance"]["trust_root"] = v["proof"]["governance"]["policy"].clone();
    invalid(v, "not a trust-root");
    // The call changed: another time (outside the approval's window would
    // need a record the node signed; the readable copy is refused first).
    let mut v = proof();
    v["records"][0]["record"]["scope"] = json!("prod/other");
    invalid(v, "readable copy");
    // A missing link is refused, not skipped.
    let mut v = proof();
    v["proof"]["governance"].as_object_mut().unwrap().remove("grant");
    invalid(v, "has none");
    let mut v = proof();
    v["proof"]["governance"].as_object_mut().unwrap().remove("registration");
    invalid(v, "no registration");
    // Governance links in a v1 document, or none in a v2 one: malformed.
    let mut v = proof();
    v["format"] = json!("modelgate-lineage-proof/v1");
    assert!(matches!(check_v2(&v), Err(LineageProofError::Malformed(_))));
    let mut v = proof();
    v["proof"].as_object_mut().unwrap().remove("governance");
    assert!(matches!(check_v2(&v), Err(LineageProofError::Malformed(_))));
}
