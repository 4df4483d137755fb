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
    if a.json {
        println!("{}", verified.to_json());
    } else {
        for line in verified.describe() {
            println!("{line}");
        }
    }
    Ok(())
}
