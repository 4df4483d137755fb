//! `modelgate node …`: set up a runtime node and enroll it.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modelgate_node::config::NodeConfig;
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::json;

use crate::gov_cmd::Signing;
use crate::Failure;

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Create the node's key (from its configuration) and print what a node
    /// admin must run to enroll it.
    Init(InitArgs),
    /// (Node admin) Enroll a node: sign its enrollment entry and submit it.
    Enroll(EnrollArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The node's configuration file (TOML; see the modelgate-node docs).
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
pub struct EnrollArgs {
    /// The node's id.
    node: String,
    /// The node's verifier key, as `modelgate node init` printed it.
    #[arg(long, value_name = "VKEY")]
    node_key: String,
    /// Scope pattern the node may serve (repeat).
    #[arg(long = "scope", value_name = "PATTERN", required = true)]
    scopes: Vec<String>,
    #[command(flatten)]
    signing: Signing,
}

pub fn run(cmd: NodeCommand) -> Result<(), Failure> {
    match cmd {
        NodeCommand::Init(a) => init(a),
        NodeCommand::Enroll(a) => {
            let key = modelgate_tlog::VerifierKey::parse(&a.node_key)
                .map_err(|e| Failure::Usage(format!("--node-key: {e}")))?;
            let p = json!({"type": "node-enrollment", "version": 1, "node": a.node, "key": key.to_string(), "scopes": a.scopes});
            crate::gov_cmd::finish(&p, &a.signing)
        }
    }
}

fn init(a: InitArgs) -> Result<(), Failure> {
    let config = NodeConfig::load(&a.config, std::env::vars()).map_err(Failure::Usage)?;
    let name = format!("{}/lineage", config.node);
    let mut seed = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed)
        .map_err(|e| Failure::Usage(format!("the operating system's random source failed: {e}")))?;
    let key =
        SignerKey::from_seed(&name, KeyType::Ed25519, &seed).map_err(|e| Failure::Usage(format!("node id: {e}")))?;
    crate::oms_cmd::write_new(
        &config.key,
        format!("{}\n", key.to_private_string()).as_bytes(),
        0o600,
        false,
    )?;
    let vkey = key.verifier().to_string();
    eprintln!("wrote the node key to {} (secret, mode 0600)", config.key.display());
    eprintln!("ask a node admin to enroll this node:");
    eprintln!(
        "  modelgate node enroll {} --node-key '{vkey}' {} --key NODE_ADMIN.key --authority {}",
        config.node,
        config
            .scopes
            .iter()
            .map(|s| format!("--scope '{s}'"))
            .collect::<Vec<_>>()
            .join(" "),
        config.authority
    );
    eprintln!("until it is enrolled, the node serves nothing.");
    println!("{vkey}");
    Ok(())
}
