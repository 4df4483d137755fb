//! `modelgate lineage verify`: check a call's proof chain offline, with the
//! pinned trust root and nothing else.
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
//! What an offline check does not redo is the fold itself (that the
//! enrollment was signed by node admins of the trust root in force then):
//! the authority and every node applied it before the entry was logged and
//! witnessed, and `modelgate log audit` replays it for anyone who asks.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use modelgate_governance::{parse_canonical, Envelope, Payload, State};
use modelgate_tlog::{leaf_hash, verify_inclusion, CheckpointPolicy, Hash, TlogProof, VerifierKey};
use serde_json::Value;

use crate::Failure;

/// The proof document's format tag.
pub(crate) const PROOF_FORMAT: &str = "modelgate-lineage-proof/v1";

#[derive(Subcommand)]
pub enum LineageCommand {
    /// Verify a lineage proof (the JSON a node serves at /lineage/ID) offline.
    ///
    /// Exit 0: every record is proven to be in the node's lineage log, whose
    /// checkpoint is anchored in the governance log under the trust root.
    /// Exit 1: a link does not verify (the message names it). Exit 2: unreadable input.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The proof file (`-` for stdin).
    proof: PathBuf,
    /// The pinned trust root (the governance log's entry 0, as the node's
    /// configuration names it).
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: LineageCommand) -> Result<(), Failure> {
    match cmd {
        LineageCommand::Verify(a) => verify(a),
    }
}

fn read_input(p: &std::path::Path) -> Result<Vec<u8>, Failure> {
    if p.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().take(16 << 20), &mut b)
            .map_err(|e| Failure::Usage(format!("reading stdin: {e}")))?;
        Ok(b)
    } else {
        crate::oms_cmd::read_limited(p, 16 << 20, "proof")
    }
}

use std::io::Read as _;

fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, Failure> {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur
            .get(k)
            .ok_or_else(|| Failure::Usage(format!("the proof has no {path}")))?;
    }
    Ok(cur)
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, Failure> {
    field(v, path)?
        .as_str()
        .ok_or_else(|| Failure::Usage(format!("{path} must be a string")))
}

fn b64(v: &Value, path: &str) -> Result<Vec<u8>, Failure> {
    B64.decode(string(v, path)?)
        .map_err(|e| Failure::Usage(format!("{path}: {e}")))
}

fn hashes(v: &Value, path: &str) -> Result<Vec<Hash>, Failure> {
    field(v, path)?
        .as_array()
        .ok_or_else(|| Failure::Usage(format!("{path} must be an array")))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| B64.decode(s).ok())
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| Failure::Usage(format!("{path}: every hash must be base64 SHA-256")))
        })
        .collect()
}

/// A governance entry proven included under `policy`; returns its payload.
fn governed_entry(v: &Value, what: &str, policy: &CheckpointPolicy) -> Result<(Payload, Envelope, u64), Failure> {
    let entry = b64(v, &format!("proof.{what}.entry"))?;
    let index = field(v, &format!("proof.{what}.index"))?
        .as_u64()
        .ok_or_else(|| Failure::Usage(format!("proof.{what}.index must be a number")))?;
    let tp = TlogProof::parse(string(v, &format!("proof.{what}.tlog_proof"))?.as_bytes())
        .map_err(|e| Failure::Usage(format!("proof.{what}.tlog_proof: {e}")))?;
    if tp.index != index {
        return Err(Failure::Invalid(format!(
            "the {what} tlog-proof is for index {}, the entry claims {index}",
            tp.index
        )));
    }
    let verified = tp
        .verify(&leaf_hash(&entry), policy)
        .map_err(|e| Failure::Invalid(format!("the {what} entry is not proven in the governance log: {e}")))?;
    let env = Envelope::parse(&entry).map_err(|e| Failure::Invalid(format!("the {what} entry: {e}")))?;
    let payload = parse_canonical(&env.payload)
        .map_err(|e| e.to_string())
        .and_then(|p| Payload::decode(p).map_err(|e| e.to_string()))
        .map_err(|e| Failure::Invalid(format!("the {what} entry's payload: {e}")))?;
    Ok((payload, env, verified.checkpoint.checkpoint.size))
}

fn verify(a: VerifyArgs) -> Result<(), Failure> {
    let bytes = read_input(&a.proof)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Failure::Usage(format!("the proof is not JSON: {e}")))?;
    if v["anchored"] == Value::Bool(false) {
        return Err(Failure::Invalid(
            "this record is not anchored yet: there is no proof chain to check (fetch it again after the next anchor)"
                .into(),
        ));
    }
    if string(&v, "format")? != PROOF_FORMAT {
        return Err(Failure::Usage(format!("the proof's format is not {PROOF_FORMAT}")));
    }
    let node = string(&v, "node")?.to_owned();
    let pinned = crate::oms_cmd::read_limited(&a.trust_root, 1 << 20, "trust root")?;
    let root = State::new(&pinned)
        .and_then(|mut s| {
            s.apply(&pinned)?;
            Ok(s)
        })
        .map_err(|e| Failure::Usage(format!("trust root: {e}")))?
        .trust_root()
        .cloned()
        .ok_or_else(|| Failure::Usage("the trust root file sets no trust root".into()))?;
    let policy = CheckpointPolicy::new(
        root.log_key.clone(),
        root.witness_keys.clone(),
        root.doc.witness_quorum as usize,
    )
    .map_err(|e| Failure::Usage(format!("trust root's witness policy: {e}")))?;

    // 4. The node's key, from its enrollment in the governed log.
    let (payload, _, gov_size) = governed_entry(&v, "enrollment", &policy)?;
    let Payload::NodeEnrollment(enr) = payload else {
        return Err(Failure::Invalid("the enrollment entry is not a node-enrollment".into()));
    };
    if enr.node != node {
        return Err(Failure::Invalid(format!(
            "the enrollment is for node {:?}, the proof for {node:?}",
            enr.node
        )));
    }
    let node_key = VerifierKey::parse(&enr.key).map_err(|e| Failure::Invalid(format!("enrolled key: {e}")))?;

    // 3 and 2. The anchor: in the governed log, signed by the node, carrying the checkpoint.
    let (payload, env, anchor_gov_size) = governed_entry(&v, "anchor", &policy)?;
    let Payload::NodeAnchor(anchor) = payload else {
        return Err(Failure::Invalid("the anchor entry is not a node-anchor".into()));
    };
    if anchor.node != node {
        return Err(Failure::Invalid(format!(
            "the anchor is by node {:?}, not {node:?}",
            anchor.node
        )));
    }
    let pk = *node_key.public_key();
    let id = modelgate_governance::key_id(&pk);
    let signers = env
        .verified_keys(|k| (k == id).then_some(pk))
        .map_err(|e| Failure::Invalid(format!("the anchor entry's signatures: {e}")))?;
    if signers.is_empty() {
        return Err(Failure::Invalid(
            "the anchor entry is not signed by the node's enrolled key".into(),
        ));
    }
    let note = string(&v, "proof.lineage_checkpoint")?;
    if anchor.checkpoint != note {
        return Err(Failure::Invalid(
            "the lineage checkpoint is not the one the anchor entry carries".into(),
        ));
    }
    let lineage_policy =
        CheckpointPolicy::new(node_key.clone(), vec![], 0).map_err(|e| Failure::Invalid(e.to_string()))?;
    let cp = lineage_policy
        .verify(note.as_bytes())
        .map_err(|e| Failure::Invalid(format!("the lineage checkpoint: {e}")))?
        .checkpoint;

    // 1. Every record in that checkpoint.
    let records = field(&v, "proof.records")?
        .as_array()
        .ok_or_else(|| Failure::Usage("proof.records must be an array".into()))?;
    if records.is_empty() {
        return Err(Failure::Usage("the proof has no records".into()));
    }
    let mut shown = Vec::new();
    for (k, r) in records.iter().enumerate() {
        let entry = b64(r, "entry")?;
        let index = field(r, "index")?
            .as_u64()
            .ok_or_else(|| Failure::Usage(format!("proof.records[{k}].index must be a number")))?;
        let proof = hashes(r, "inclusion")?;
        verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root).map_err(|e| {
            Failure::Invalid(format!(
                "lineage record {index} is not in the node's checkpoint (size {}): {e}",
                cp.size
            ))
        })?;
        let rv: Value = serde_json::from_slice(&entry).unwrap_or(Value::Null);
        // The readable copy next to the proof must say what the proven bytes say.
        if let Some(copy) = v["records"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["index"] == index))
        {
            if copy["record"] != rv {
                return Err(Failure::Invalid(format!(
                    "the readable copy of record {index} differs from the proven bytes"
                )));
            }
        }
        shown.push((index, rv));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"verified": true, "node": node, "lineage_size": cp.size,
                "anchor_index": field(&v, "proof.anchor.index")?, "governance_size": anchor_gov_size.max(gov_size),
                "records": shown.iter().map(|(i, r)| serde_json::json!({"index": i, "record": r})).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "verified: {} record(s) of node {node} are in its lineage log (size {}), anchored at governance index {} (governance checkpoint size {anchor_gov_size}), under the pinned trust root",
            shown.len(),
            cp.size,
            field(&v, "proof.anchor.index")?
        );
        for (i, r) in &shown {
            match r["type"].as_str() {
                Some("request") => println!(
                    "  #{i} request: {} in {} called {} ({}) under approval {}, policies {}, governance size {}",
                    r["principal"].as_str().unwrap_or("?"),
                    r["scope"].as_str().unwrap_or("?"),
                    r["model"].as_str().unwrap_or("?"),
                    r["digest"].as_str().unwrap_or("?"),
                    r["approval"].as_str().unwrap_or("-"),
                    r["policies"],
                    r["governance"]["size"]
                ),
                Some("completion") => println!(
                    "  #{i} completion: status {}, {}, {} bytes, sha256 {}, usage {}",
                    r["status"],
                    r["outcome"].as_str().unwrap_or("?"),
                    r["bytes"],
                    r["response_sha256"].as_str().unwrap_or("?"),
                    r["usage"]
                ),
                _ => println!("  #{i} {r}"),
            }
        }
    }
    Ok(())
}
