//! `modelgate node …`: set up a runtime node and enroll it.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use modelgate_node::config::NodeConfig;
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
    /// Sync once with the authority (verifying everything, persisting the
    /// trusted checkpoint), take each configured model through the ten
    /// lifecycle steps, and report each one: Serving, or Contained and why.
    Status(StatusArgs),
    /// Run the node: keep syncing, keep every model's lifecycle current
    /// (model files are watched with inotify), contain on any failed check
    /// (one JSON line per change on stdout; containments reported to the
    /// authority), recover only through all ten steps, anchor the lineage
    /// log, send heartbeats. Runs until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Run the node as a governed gateway in front of an OpenAI-compatible
    /// inference server (`listen` and `upstream` in the configuration).
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// The node's configuration file (`listen`, `upstream`, `[callers.*]`).
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// How often to sync and re-check, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval_ms: u64,
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
        NodeCommand::Status(a) => status(a),
        NodeCommand::Run(a) => run_node(a),
        NodeCommand::Serve(a) => serve(a),
        NodeCommand::Enroll(a) => {
            let key = modelgate_tlog::VerifierKey::parse(&a.node_key)
                .map_err(|e| Failure::Usage(format!("--node-key: {e}")))?;
            let p = modelgate_governance::NodeEnrollmentEntry::new(&a.node, &key.to_string(), a.scopes);
            crate::gov_cmd::finish(&p, &a.signing)
        }
    }
}

fn init(a: InitArgs) -> Result<(), Failure> {
    let config = NodeConfig::load(&a.config, std::env::vars())?;
    let (vkey, enroll) = modelgate_runtime::init::init_node_key(&config).map_err(|e| match e {
        modelgate_runtime::Error::Node(modelgate_node::NodeError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Failure::Usage(format!("{} exists: this node has a key already", config.key.display()))
        }
        e => e.into(),
    })?;
    match config.key_uri() {
        Some(uri) => eprintln!(
            "the node key is on its token: {}",
            modelgate_signer::uri::Pkcs11Uri::redacted(uri)
        ),
        None => eprintln!("wrote the node key to {} (secret, mode 0600)", config.key.display()),
    }
    eprintln!("ask a node admin to enroll this node:\n  {enroll}");
    eprintln!("until it is enrolled, the node serves nothing.");
    println!("{vkey}");
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// A monitor caller's token, for a running node whose /status needs one
    /// (status_access = "token").
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MODELGATE_NODE_STATUS_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

use modelgate_runtime::Runtime;

/// Where each model stands: the running node's own answer (its /status), or,
/// with no node running, one sync and lifecycle run on its data directory.
pub fn status(a: StatusArgs) -> Result<(), Failure> {
    use modelgate_runtime::status::{all_serving, ask_running, status_url};
    let config = modelgate_node::config::NodeConfig::load(&a.config, std::env::vars())?;
    let url = status_url(&config);
    match ask_running(&config, a.token.as_deref()).map_err(Failure::Invalid)? {
        Some(running) => {
            print_running(&running, &url, a.json);
            if all_serving(&running) {
                return Ok(());
            }
            return Err(Failure::Invalid(format!(
                "the node running at {url} does not serve every model"
            )));
        }
        None => eprintln!("no node answers at {url}: the status below is worked out from the data directory"),
    }
    data_dir_status(a)
}

/// A running node's status, as text (or its JSON, with `"source"`).
fn print_running(status: &serde_json::Value, url: &str, as_json: bool) {
    if as_json {
        let mut v = status.clone();
        v["source"] = json!({"running": url});
        println!("{v}");
        return;
    }
    for line in modelgate_runtime::status::describe_running(status, url) {
        println!("{line}");
    }
}

fn data_dir_status(a: StatusArgs) -> Result<(), Failure> {
    let (report, failed) = modelgate_runtime::status::from_data_dir(&a.config)?;
    if a.json {
        println!("{report}");
    } else {
        for line in modelgate_runtime::status::describe_data_dir(&report) {
            println!("{line}");
        }
    }
    // Scripts and health checks read the exit code: 0 only when the node
    // is synced and every model is Serving.
    failed.map_or(Ok(()), |why| Err(Failure::Invalid(why)))
}

#[derive(Args)]
pub struct RunArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// How often to sync and re-check, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval_ms: u64,
}

/// The node's loop: sync, keep every model's lifecycle current, contain on
/// any failed check, recover only through all ten steps. One JSON line per
/// state change on stdout; containments are also reported to the authority.
pub fn run_node(a: RunArgs) -> Result<(), Failure> {
    crate::return_freed_memory_promptly();
    crate::init_logging();
    let rt = Runtime::open(&a.config, std::time::Duration::from_millis(a.interval_ms.max(10)))?;
    modelgate_runtime::runtime::stop_on_signals(&rt.shared());
    rt.run(|e| crate::print_line(&e.json()));
    Ok(())
}

/// `modelgate node serve`: the node loop on its thread, the gateway on a
/// tokio runtime, until SIGTERM or SIGINT.
pub fn serve(a: ServeArgs) -> Result<(), Failure> {
    crate::return_freed_memory_promptly();
    crate::init_logging();
    let rt = Runtime::open(&a.config, std::time::Duration::from_millis(a.interval_ms.max(10)))?;
    let listening = |addr| crate::print_line(&json!({"listening": format!("http://{addr}")}));
    Ok(modelgate_runtime::gateway::serve_until_signal(
        rt,
        |e| crate::print_line(&e.json()),
        listening,
    )?)
}
