//! `modelgate lineage verify`: check a call's proof chain offline, with the
//! pinned trust root and nothing else.
//!
//! What each link of the chain proves, and what an offline check does not
//! redo, is documented with the check itself, in `modelgate_node::proof`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modelgate_node::proof::{verify_lineage_proof, LineageProofError, MAX_PROOF_BYTES};

use crate::Failure;

#[derive(Subcommand)]
pub enum LineageCommand {
    /// Verify a lineage proof offline: the JSON a node serves at /lineage/ID,
    /// or the full-chain proof the authority serves for a replicated record
    /// (/api/v1/nodes/NODE/lineage/ID/proof).
    ///
    /// Exit 0: every record is proven to be in the node's lineage log, whose
    /// checkpoint is anchored in the governance log under the trust root; a
    /// full-chain proof also proves the trust-root version, the model's
    /// registration and signer, the approval or exception and the policy set
    /// behind the call, all against one governance checkpoint.
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

fn verify(a: VerifyArgs) -> Result<(), Failure> {
    let bytes = crate::log_cmd::read_input(&a.proof, MAX_PROOF_BYTES as u64, "proof")?;
    let pinned = crate::oms_cmd::read_limited(&a.trust_root, 1 << 20, "trust root")?;
    let verified = verify_lineage_proof(&bytes, &pinned).map_err(|e| match e {
        LineageProofError::Malformed(m) => Failure::Usage(m),
        LineageProofError::Invalid(m) => Failure::Invalid(m),
    })?;
    let (node, shown) = (&verified.node, &verified.records);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"verified": true, "node": node, "lineage_size": verified.lineage_size,
                "anchor_index": verified.anchor_index, "governance_size": verified.governance_size,
                "links": verified.links,
                "records": shown.iter().map(|(i, r)| serde_json::json!({"index": i, "record": r})).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "verified: {} record(s) of node {node} are in its lineage log (size {}), anchored at governance index {} (governance checkpoint size {}), under the pinned trust root",
            shown.len(),
            verified.lineage_size,
            verified.anchor_index,
            verified.governance_size
        );
        for l in &verified.links {
            println!("  governance: {l}");
        }
        for (i, r) in shown {
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
