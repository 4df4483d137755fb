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
    /// Sync once with the authority (verifying everything, persisting the
    /// trusted checkpoint), take each configured model through the ten
    /// lifecycle steps, and report each one: Serving, or Contained and why.
    Status(StatusArgs),
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

#[derive(Args)]
pub struct StatusArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// HTTP reads from the authority, for the sync.
struct Http {
    base: String,
    agent: ureq::Agent,
}

impl modelgate_node::Fetch for Http {
    fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut r = self.agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
        if r.status().as_u16() != 200 {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        r.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sync once, then take every configured model through the lifecycle and
/// report where each one stands.
pub fn status(a: StatusArgs) -> Result<(), Failure> {
    use modelgate_node::lifecycle::{Lifecycle, ModelSpec};
    use modelgate_node::sync::{Syncer, Trusted};
    let usage = |m: String| Failure::Usage(m);
    let c = NodeConfig::load(&a.config, std::env::vars()).map_err(usage)?;
    let pinned = crate::oms_cmd::read_limited(&c.trust_root, 1 << 20, "trust root")?;
    let key_text =
        std::fs::read_to_string(&c.key).map_err(|e| usage(format!("couldn't read {}: {e}", c.key.display())))?;
    let key = SignerKey::parse(key_text.trim()).map_err(|e| usage(format!("{}: {e}", c.key.display())))?;
    std::fs::create_dir_all(&c.data_dir)
        .map_err(|e| usage(format!("couldn't create {}: {e}", c.data_dir.display())))?;
    let trusted_path = c.data_dir.join("trusted-checkpoint.json");
    let trusted: Option<Trusted> = match std::fs::read(&trusted_path) {
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| usage(format!("{}: {e}", trusted_path.display())))?),
        Err(_) => None,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let fetch = Http {
        base: c.authority.clone(),
        agent,
    };
    let mut syncer = Syncer::new(&pinned, c.max_staleness_seconds, trusted).map_err(|e| usage(e.to_string()))?;
    let t = now();
    let sync = syncer.sync(&fetch, t).cloned();
    if let Ok(v) = &sync {
        // Persist before acting on it: rollback and fork protection survive restarts.
        let tmp = trusted_path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&v.trusted()).map_err(|e| usage(e.to_string()))?;
        let _ = std::fs::remove_file(&tmp);
        crate::oms_cmd::write_new(&tmp, &bytes, 0o644, false)?;
        std::fs::rename(&tmp, &trusted_path)
            .map_err(|e| usage(format!("couldn't replace {}: {e}", trusted_path.display())))?;
    }
    let view = sync.as_ref().ok();
    let lineage_path = c.data_dir.join("lineage.db");
    let mut lineage = modelgate_store::SqliteStore::open(&lineage_path)
        .and_then(|s| modelgate_store::Log::open(s, key.clone()))
        .map_err(|e| e.to_string());
    let lineage_policy =
        modelgate_tlog::CheckpointPolicy::new(key.verifier(), vec![], 0).map_err(|e| usage(e.to_string()))?;
    let mut models = Vec::new();
    for (name, m) in &c.models {
        let spec = ModelSpec {
            name: name.clone(),
            dir: m.dir.clone(),
            bundle: m.bundle.clone(),
            scope: c.scopes[0].clone(),
            node: c.node.clone(),
        };
        let staleness = c.max_staleness_seconds;
        let outcome = (|| {
            let (l, v) = Lifecycle::new(spec, t)
                .validate(t)?
                .inspect_coordination(view, t, staleness)?;
            let l = l.verify_integrity(t)?.verify_signature(v, t)?;
            let l = l.validate_telemetry(lineage.as_ref().map(|g| g.size()).map_err(Clone::clone), t)?;
            let (l, digest, basis) = l.evaluate(v, t)?;
            let l = l.approve(t);
            let record = serde_json::to_vec(&json!({"model": name, "digest": digest, "transitions": l.transitions().iter().map(|x| json!({"step": x.step, "time": x.time, "detail": x.detail})).collect::<Vec<_>>()}))
                .unwrap_or_default();
            let durable = match lineage.as_mut() {
                Ok(g) => g.append(&[record]).map(|a| a.first).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            let l = l.persist(durable, t)?;
            let audited = match lineage.as_ref() {
                Ok(g) => modelgate_store::audit(g.store(), &lineage_policy)
                    .map(|r| r.entries)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            let l = l.verify_audit(audited, t)?;
            Ok::<_, Box<Lifecycle<modelgate_node::lifecycle::Contained>>>(l.serve(digest, basis, v.checkpoint.size, t))
        })();
        models.push(match outcome {
            Ok(s) => json!({"model": name, "state": "Serving", "digest": s.serving().digest, "basis": s.serving().basis}),
            Err(c) => json!({"model": name, "state": "Contained", "reason": format!("{:?}", c.contained().reason), "detail": c.contained().detail}),
        });
    }
    let report = json!({
        "node": c.node,
        "sync": match &sync {
            Ok(v) => json!({"ok": true, "size": v.checkpoint.size, "staleness_seconds": t.saturating_sub(v.authority_time)}),
            Err(e) => json!({"ok": false, "reason": format!("{:?}", e.reason), "detail": e.detail}),
        },
        "models": models,
    });
    if a.json {
        println!("{report}");
    } else {
        match &sync {
            Ok(v) => println!(
                "sync: size {} ({} s old)",
                v.checkpoint.size,
                t.saturating_sub(v.authority_time)
            ),
            Err(e) => println!("sync: CONTAINED {:?}: {}", e.reason, e.detail),
        }
        for m in report["models"].as_array().into_iter().flatten() {
            match m["state"].as_str() {
                Some("Serving") => println!(
                    "{}: Serving {} under {}",
                    m["model"].as_str().unwrap_or("?"),
                    m["digest"].as_str().unwrap_or("?"),
                    m["basis"].as_str().unwrap_or("?")
                ),
                _ => println!(
                    "{}: Contained {}: {}",
                    m["model"].as_str().unwrap_or("?"),
                    m["reason"].as_str().unwrap_or("?"),
                    m["detail"].as_str().unwrap_or("")
                ),
            }
        }
    }
    Ok(())
}
