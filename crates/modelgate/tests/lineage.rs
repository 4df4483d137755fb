//! Lineage replication end to end: a real authority and a real gateway. The
//! node ships its lineage records to the authority, which keeps them only
//! when they prove themselves (the node's signed checkpoint, consistency, its
//! anchors), indexes them for search, serves each with its inclusion proof,
//! refuses a batch that is not what it claims without keeping anything, and
//! keeps as evidence a checkpoint the node signed that contradicts the
//! history it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::s;
use common::world::{agent, approved_node, call, caller_table, chat, eventually, get_json, start_gateway, world};
use modelgate_tlog::{leaf_hash, verify_inclusion, Checkpoint, CheckpointPolicy, Hash, SignerKey, VerifierKey};
use serde_json::{json, Value};

const TOKEN: &str = "replicated-caller-secret";

fn post(url: &str, body: &Value) -> (u16, Value, Option<String>) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    let size = r
        .headers()
        .get("x-modelgate-lineage-size")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), size)
}

#[test]
fn a_nodes_lineage_is_replicated_proven_searchable_and_forks_are_evidence() {
    let w = world();
    let url = w.server.url.clone();
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\nlineage_replication_interval_seconds = 1\n{}",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    let g = start_gateway(&config);
    common::world::wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    let mut ids = Vec::new();
    for _ in 0..12 {
        let (st, h, body) = call(&g.url, Some(TOKEN), None, &chat(false));
        assert_eq!(st, 200, "{body}");
        ids.push(h["x-modelgate-lineage-id"].to_str().unwrap().parse::<u64>().unwrap());
    }
    // A denial, recorded too: a scope the caller may not use.
    let (st, h, _) = call(&g.url, Some(TOKEN), Some("prod/other"), &chat(false));
    assert_eq!(st, 403);
    let denied: u64 = h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap();

    // The authority catches up with the node's lineage log.
    let (held, took) = eventually(20, "the authority holds every record", || {
        let held = get_json(&format!("{url}/api/v1/nodes/node-1/lineage"))["size"]
            .as_u64()
            .unwrap();
        (held > denied).then_some(held)
    });
    println!("replicated {held} records in {} ms", took.as_millis());

    // Searchable: by caller, by decision and reason, by model digest prefix.
    let search = |q: &str| -> Vec<Value> {
        get_json(&format!("{url}/api/v1/lineage?{q}"))["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    let calls = search("caller=scoring-service&node=node-1&limit=100");
    assert_eq!(calls.len(), 13, "{calls:?}");
    let allowed = search("decision=allow&limit=100");
    assert_eq!(allowed.len(), 12);
    assert!(allowed
        .iter()
        .all(|r| r["digest"] == w.digest.as_str() && r["model"] == "credit"));
    let denials = search("decision=deny");
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0]["index"], denied);
    assert_eq!(denials[0]["code"], "ScopeNotPermitted", "{denials:?}");
    assert_eq!(search(&format!("model={}", &w.digest[..12])).len(), 12);
    assert_eq!(search("model=credit&limit=5").len(), 5);
    assert_eq!(search(&format!("id={}", ids[3]))[0]["index"], ids[3]);
    assert!(search("caller=nobody").is_empty());
    // Newest first by default, oldest first on request.
    let newest = search("limit=100");
    let oldest = search("limit=100&oldest_first=true");
    assert_eq!(newest.first(), oldest.last());

    // A record from the authority, proven against the node's signed checkpoint.
    let r = get_json(&format!("{url}/api/v1/nodes/node-1/lineage/{}", ids[0]));
    assert_eq!(r["record"]["type"], "request", "{r}");
    assert!(r["record"].get("body").is_none());
    let node_vkey = get_json(&format!("{url}/api/v1/nodes"))
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "node-1")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = CheckpointPolicy::new(VerifierKey::parse(&node_vkey).unwrap(), vec![], 0).unwrap();
    let cp = policy
        .verify(r["checkpoint"].as_str().unwrap().as_bytes())
        .unwrap()
        .checkpoint;
    let entry = B64.decode(r["entry"].as_str().unwrap()).unwrap();
    let proof: Vec<Hash> = r["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    verify_inclusion(&leaf_hash(&entry), ids[0], cp.size, &proof, &cp.root).unwrap();

    // The full-chain proof of a call, from the authority, verified offline
    // with nothing but the pinned trust root.
    let proof_url = format!("{url}/api/v1/nodes/node-1/lineage/{}/proof", ids[0]);
    let (proof, _) = eventually(20, "the call is anchored and its full proof served", || {
        let mut r = agent().get(&proof_url).call().ok()?;
        (r.status().as_u16() == 200).then(|| r.body_mut().read_to_string().unwrap())
    });
    println!("full-chain proof: {} bytes", proof.len());
    // MODELGATE_FIXTURES=DIR keeps this proof and its trust root (the
    // fixtures of modelgate-node's tests/proof.rs come from here).
    if let Some(d) = std::env::var_os("MODELGATE_FIXTURES") {
        let d = std::path::PathBuf::from(d);
        std::fs::write(d.join("lineage-proof-v2.json"), &proof).unwrap();
        std::fs::copy(w.data.join("trust-root.dsse.json"), d.join("trust-root-v2.dsse.json")).unwrap();
    }
    let pf = w.dir.path().join("call.proof.json");
    std::fs::write(&pf, &proof).unwrap();
    let tr = w.data.join("trust-root.dsse.json");
    let t = std::time::Instant::now();
    let out = common::ok(&common::mg(&["lineage", "verify", s(&pf), "--trust-root", s(&tr)]));
    println!(
        "{out}verified by the CLI in {} ms (process included)",
        t.elapsed().as_millis()
    );
    for want in [
        "governance: trust root version 2",
        "governance: model credit 1.0",
        "its OMS bundle signed by signer",
        "governance: approval",
        "by alice (Low tier, 1 needed) covers scope prod/credit/scoring",
        "governance: policy set",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    // The console offers the same proof as a download.
    let mut r = agent()
        .get(&format!("{url}/lineage/node-1/{}/proof", ids[0]))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let from_console: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(from_console["format"], "modelgate-lineage-proof/v2");
    // One changed field in any link is refused, naming the link.
    let doc: Value = serde_json::from_str(&proof).unwrap();
    let tamper = |path: &str, f: &dyn Fn(&mut Value)| -> String {
        let mut d = doc.clone();
        f(d.pointer_mut(path).unwrap_or_else(|| panic!("no {path} in the proof")));
        std::fs::write(&pf, serde_json::to_vec(&d).unwrap()).unwrap();
        let o = common::mg(&["lineage", "verify", s(&pf), "--trust-root", s(&tr)]);
        assert_ne!(o.status.code(), Some(0), "{path:?} tampered and still verified");
        common::stderr(&o)
    };
    let flip = |v: &mut Value| {
        let t = v.as_str().unwrap().to_owned();
        let mut b = B64.decode(&t).unwrap();
        let k = b.len() / 2;
        b[k] ^= 1;
        *v = Value::String(B64.encode(&b));
    };
    let why = tamper("/proof/governance/grant/entry", &flip);
    assert!(why.contains("grant"), "{why}");
    let why = tamper("/proof/governance/registration/entry", &flip);
    assert!(why.contains("registration"), "{why}");
    let why = tamper("/proof/governance/policy/entry", &flip);
    assert!(why.contains("policy"), "{why}");
    let why = tamper("/records/0/record/scope", &|v| *v = json!("prod/other"));
    assert!(why.contains("readable copy"), "{why}");
    // Another approval than the one the record names.
    let why = tamper("/proof/governance", &|g| g["grant"] = g["trust_root"].clone());
    assert!(why.contains("grant"), "{why}");
    // Without the governance links, a v2 proof is refused (exit 2).
    let o = {
        let mut d = doc.clone();
        d["proof"].as_object_mut().unwrap().remove("governance");
        std::fs::write(&pf, serde_json::to_vec(&d).unwrap()).unwrap();
        common::mg(&["lineage", "verify", s(&pf), "--trust-root", s(&tr)])
    };
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    // Not yet anchored: 409 with Retry-After, never a partial proof.
    let mut r = agent()
        .get(&format!("{url}/api/v1/nodes/node-1/lineage/999999/proof"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "{}", r.body_mut().read_to_string().unwrap());

    // Batches that are not what they claim: refused, nothing kept.
    let key = SignerKey::parse(std::fs::read_to_string(w.dir.path().join("node.skey")).unwrap().trim()).unwrap();
    let lineage_url = format!("{url}/api/v1/nodes/node-1/lineage");
    let sign = |size: u64, root: Hash| -> String {
        let note = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root,
            extensions: vec![],
        }
        .sign(&key)
        .unwrap()
        .to_bytes();
        String::from_utf8(note).unwrap()
    };
    let fake = br#"{"type":"request","time":1,"node":"node-1","principal":"forged"}"#.to_vec();
    // Records that do not make the signed root (anyone can send those).
    let (st, body, _) = post(
        &lineage_url,
        &json!({"from": held, "records": [B64.encode(&fake)], "checkpoint": sign(held + 1, [7; 32]), "consistency": []}),
    );
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["code"], "lineage-invalid");
    // Not at the size held: a gap, the size held in a header.
    let (st, body, size) = post(
        &lineage_url,
        &json!({"from": held + 5, "records": [B64.encode(&fake)], "checkpoint": sign(held + 6, [7; 32]), "consistency": []}),
    );
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["error"]["code"], "lineage-gap");
    assert_eq!(size.as_deref(), Some(held.to_string().as_str()));
    // Content never leaves a node.
    let with_body = br#"{"type":"request","time":1,"body":"the prompt"}"#.to_vec();
    let (st, body, _) = post(
        &lineage_url,
        &json!({"from": held, "records": [B64.encode(&with_body)], "checkpoint": sign(held + 1, [7; 32]), "consistency": []}),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (422, Some("lineage-content")),
        "{body}"
    );
    // A checkpoint not signed by the node's key.
    let other = SignerKey::from_seed(key.name(), modelgate_tlog::KeyType::Ed25519, &[9; 32]).unwrap();
    let forged = Checkpoint {
        origin: key.name().to_owned(),
        size: 3,
        root: [1; 32],
        extensions: vec![],
    }
    .sign(&other)
    .unwrap()
    .to_bytes();
    let (st, body, _) = post(
        &lineage_url,
        &json!({"from": 0, "records": [], "checkpoint": String::from_utf8(forged).unwrap(), "consistency": []}),
    );
    assert_eq!(st, 422, "{body}");
    // Unknown fields, unknown nodes.
    let (st, _, _) = post(
        &lineage_url,
        &json!({"from": 0, "records": [], "checkpoint": "", "consistency": [], "x": 1}),
    );
    assert_eq!(st, 422);
    let (st, _, _) = post(
        &format!("{url}/api/v1/nodes/node-9/lineage"),
        &json!({"from": 0, "records": [], "checkpoint": "", "consistency": []}),
    );
    assert_eq!(st, 404);
    assert!(get_json(&format!("{url}/api/v1/lineage/evidence"))["evidence"]
        .as_array()
        .unwrap()
        .is_empty());
    let still = get_json(&lineage_url)["size"].as_u64().unwrap();
    assert!(still >= held);
    assert_eq!(search("caller=forged").len(), 0);

    // The node's own key signs another history at a size the authority
    // holds: refused, and kept as evidence with both signed checkpoints.
    let (st, body, _) = post(
        &lineage_url,
        &json!({"from": 0, "records": [], "checkpoint": sign(3, [5; 32]), "consistency": []}),
    );
    // A batch of no records for size 3 claims from 0: its size disagrees.
    assert_eq!(st, 422, "{body}");
    let (st, body, _) = post(
        &lineage_url,
        &json!({"from": 2, "records": [B64.encode(&fake)], "checkpoint": sign(3, [5; 32]), "consistency": []}),
    );
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["error"]["code"], "lineage-inconsistent", "{body}");
    let ev = get_json(&format!("{url}/api/v1/lineage/evidence"));
    let ev = &ev["evidence"][0];
    assert_eq!(ev["node"], "node-1");
    assert!(policy.verify(ev["offered"].as_str().unwrap().as_bytes()).is_ok());
    assert!(policy.verify(ev["held"].as_str().unwrap().as_bytes()).is_ok());
    // The console shows it to anyone.
    let page = common::world::get_text(&format!("{url}/lineage"));
    assert!(page.contains("Evidence: a node signed two histories"), "{page}");
    // The node goes on replicating: a new call reaches the authority.
    let (st, h, _) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!(st, 200);
    let last: u64 = h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap();
    eventually(20, "the next call is replicated", || {
        (get_json(&lineage_url)["size"].as_u64().unwrap() > last).then_some(())
    });
    // The authority's data directory holds the mirror; a restart keeps it.
    assert!(w.data.join("lineage/index.db").exists(), "{}", s(&w.data));
}
