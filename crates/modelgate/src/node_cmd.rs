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
    /// Run the node: keep syncing, keep every model's lifecycle current,
    /// contain on any failed check (one JSON line per change on stdout;
    /// containments reported to the authority), recover only through all
    /// ten steps. Runs until stopped.
    Run(RunArgs),
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

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) type Contained = Box<modelgate_node::lifecycle::Lifecycle<modelgate_node::lifecycle::Contained>>;

/// A node's runtime pieces, set up from its configuration.
pub(crate) struct Node {
    c: NodeConfig,
    key: SignerKey,
    syncer: modelgate_node::sync::Syncer,
    fetch: Http,
    trusted_path: PathBuf,
    lineage: Result<modelgate_store::Log<modelgate_store::SqliteStore>, String>,
    lineage_policy: modelgate_tlog::CheckpointPolicy,
}

/// A model that made it through all ten steps.
pub(crate) struct ServingModel {
    pub(crate) digest: String,
    pub(crate) basis: String,
}

impl Node {
    pub(crate) fn open(config: &std::path::Path) -> Result<Self, Failure> {
        use modelgate_node::sync::{Syncer, Trusted};
        let usage = |m: String| Failure::Usage(m);
        let c = NodeConfig::load(config, std::env::vars()).map_err(usage)?;
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
        let syncer = Syncer::new(&pinned, c.max_staleness_seconds, trusted).map_err(|e| usage(e.to_string()))?;
        let lineage = modelgate_store::SqliteStore::open(&c.data_dir.join("lineage.db"))
            .and_then(|s| modelgate_store::Log::open(s, key.clone()))
            .map_err(|e| e.to_string());
        let lineage_policy =
            modelgate_tlog::CheckpointPolicy::new(key.verifier(), vec![], 0).map_err(|e| usage(e.to_string()))?;
        Ok(Self {
            c,
            key,
            syncer,
            fetch,
            trusted_path,
            lineage,
            lineage_policy,
        })
    }

    /// Sync; on success persist the trusted checkpoint before it is used.
    pub(crate) fn sync(&mut self, t: u64) -> Result<modelgate_node::View, modelgate_node::SyncError> {
        let v = self.syncer.sync(&self.fetch, t).cloned()?;
        let bytes = serde_json::to_vec_pretty(&v.trusted()).unwrap_or_default();
        let tmp = self.trusted_path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let persisted = crate::oms_cmd::write_new(&tmp, &bytes, 0o644, false).is_ok()
            && std::fs::rename(&tmp, &self.trusted_path).is_ok();
        if !persisted {
            return Err(modelgate_node::SyncError {
                reason: modelgate_node::ContainmentReason::AuditDiscontinuity,
                detail: format!("couldn't persist {}", self.trusted_path.display()),
            });
        }
        Ok(v)
    }

    /// All ten steps for one model; the lifecycle is recorded in the lineage log.
    pub(crate) fn lifecycle(
        &mut self,
        name: &str,
        view: Option<&modelgate_node::View>,
        t: u64,
    ) -> Result<ServingModel, Contained> {
        use modelgate_node::lifecycle::{Lifecycle, ModelSpec};
        let m = &self.c.models[name];
        let spec = ModelSpec {
            name: name.to_owned(),
            dir: m.dir.clone(),
            bundle: m.bundle.clone(),
            scope: self.c.scopes[0].clone(),
            node: self.c.node.clone(),
        };
        let (l, v) =
            Lifecycle::new(spec, t)
                .validate(t)?
                .inspect_coordination(view, t, self.c.max_staleness_seconds)?;
        let l = l.verify_integrity(t)?.verify_signature(v, t)?;
        let l = l.validate_telemetry(self.lineage.as_ref().map(|g| g.size()).map_err(Clone::clone), t)?;
        let (l, digest, basis) = l.evaluate(v, t)?;
        let l = l.approve(t);
        let steps: Vec<_> = l
            .transitions()
            .iter()
            .map(|x| json!({"step": x.step, "time": x.time, "detail": x.detail}))
            .collect();
        let record =
            serde_json::to_vec(&json!({"model": name, "digest": digest, "transitions": steps})).unwrap_or_default();
        let durable = match self.lineage.as_mut() {
            Ok(g) => g.append(&[record]).map(|a| a.first).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let l = l.persist(durable, t)?;
        let audited = match self.lineage.as_ref() {
            Ok(g) => modelgate_store::audit(g.store(), &self.lineage_policy)
                .map(|r| r.entries)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let l = l.verify_audit(audited, t)?;
        let s = l.serve(digest, basis, v.checkpoint.size, t);
        Ok(ServingModel {
            digest: s.serving().digest.clone(),
            basis: s.serving().basis.clone(),
        })
    }

    /// Tell the authority (best effort; the containment itself does not wait for it).
    fn report(
        &self,
        model_digest: Option<&str>,
        reason: modelgate_node::ContainmentReason,
        detail: &str,
        recovered: bool,
        t: u64,
    ) {
        let models: Vec<String> = model_digest.map(str::to_owned).into_iter().collect();
        if let Ok(entry) =
            modelgate_node::report::containment_report(&self.key, &self.c.node, &models, reason, detail, recovered, t)
        {
            let url = format!("{}/api/v1/entries", self.c.authority.trim_end_matches('/'));
            let _ = self
                .fetch
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(&entry[..]);
        }
    }
}

/// Sync once, then take every configured model through the lifecycle and
/// report where each one stands.
pub fn status(a: StatusArgs) -> Result<(), Failure> {
    let mut node = Node::open(&a.config)?;
    let t = now();
    let sync = node.sync(t);
    let view = sync.as_ref().ok();
    let names: Vec<String> = node.c.models.keys().cloned().collect();
    let mut models = Vec::new();
    for name in &names {
        models.push(match node.lifecycle(name, view, t) {
            Ok(s) => json!({"model": name, "state": "Serving", "digest": s.digest, "basis": s.basis}),
            Err(c) => json!({"model": name, "state": "Contained", "reason": format!("{:?}", c.contained().reason), "detail": c.contained().detail}),
        });
    }
    let report = json!({
        "node": node.c.node,
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
            let name = m["model"].as_str().unwrap_or("?");
            match m["state"].as_str() {
                Some("Serving") => println!(
                    "{name}: Serving {} under {}",
                    m["digest"].as_str().unwrap_or("?"),
                    m["basis"].as_str().unwrap_or("?")
                ),
                _ => println!(
                    "{name}: Contained {}: {}",
                    m["reason"].as_str().unwrap_or("?"),
                    m["detail"].as_str().unwrap_or("")
                ),
            }
        }
    }
    Ok(())
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

/// Files of a model: (path, length, modification time).
type Fingerprint = Vec<(PathBuf, u64, std::time::SystemTime)>;

/// A cheap fingerprint of a model's files (path, length, modification
/// time): when it changes, the files are re-hashed.
fn fingerprint(dir: &std::path::Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            if let Ok(m) = std::fs::symlink_metadata(&d) {
                out.push((d.clone(), m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
    }
    out.sort();
    out
}

fn event(t: u64, model: &str, state: &str, reason: Option<modelgate_node::ContainmentReason>, detail: &str) {
    use std::io::Write as _;
    let line = json!({"time": t, "model": model, "state": state, "reason": reason.map(|r| format!("{r:?}")), "detail": detail});
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The node's loop: sync, keep every model's lifecycle current, contain on
/// any failed check, recover only through all ten steps. One JSON line per
/// state change on stdout; containments are also reported to the authority.
pub fn run_node(a: RunArgs) -> Result<(), Failure> {
    use modelgate_governance::{decide, DecisionRequest};
    use modelgate_node::ContainmentReason;
    let mut node = Node::open(&a.config)?;
    let names: Vec<String> = node.c.models.keys().cloned().collect();
    // Per model: Some((digest, fingerprint)) while Serving.
    let mut serving: std::collections::BTreeMap<String, (String, Fingerprint)> = Default::default();
    let mut contained: std::collections::BTreeMap<String, (ContainmentReason, u64, Fingerprint)> = Default::default();
    let mut view: Option<modelgate_node::View> = None;
    loop {
        let t = now();
        match node.sync(t) {
            Ok(v) => view = Some(v),
            Err(e) => {
                let fatal = e.reason != ContainmentReason::SyncInterrupted;
                let stale = view
                    .as_ref()
                    .is_none_or(|v| t.saturating_sub(v.authority_time) > node.c.max_staleness_seconds);
                if fatal || stale {
                    view = None;
                    for name in std::mem::take(&mut serving).into_keys() {
                        event(t, &name, "Contained", Some(e.reason), &e.detail);
                        node.report(None, e.reason, &e.detail, false, t);
                        contained.insert(name.clone(), (e.reason, 0, fingerprint(&node.c.models[&name].dir)));
                    }
                }
            }
        }
        for name in &names {
            let dir = node.c.models[name].dir.clone();
            let fp = fingerprint(&dir);
            if let Some((digest, old_fp)) = serving.get(name).cloned() {
                // Serving: the decision must still allow it, and the files must not change.
                let v = view.as_ref();
                let req = DecisionRequest {
                    model: digest.clone(),
                    scope: node.c.scopes[0].clone(),
                    node: node.c.node.clone(),
                    principal: format!("node:{}", node.c.node),
                    groups: vec![],
                    attributes: vec![],
                };
                let denied = v.map(|v| decide(&v.state, &req, t)).filter(|d| !d.allow);
                if let Some(d) = denied {
                    let detail = format!("{:?}: {}", d.reasons, d.detail);
                    serving.remove(name);
                    event(
                        t,
                        name,
                        "Contained",
                        Some(ContainmentReason::UnverifiableTransition),
                        &detail,
                    );
                    node.report(
                        Some(&digest),
                        ContainmentReason::UnverifiableTransition,
                        &detail,
                        false,
                        t,
                    );
                    contained.insert(
                        name.clone(),
                        (
                            ContainmentReason::UnverifiableTransition,
                            v.map_or(0, |v| v.checkpoint.size),
                            fp,
                        ),
                    );
                    continue;
                }
                if fp == old_fp {
                    continue;
                }
            } else if let Some((_, size, old_fp)) = contained.get(name) {
                // Contained: retry only when the log or the files changed.
                if view.as_ref().is_none_or(|v| v.checkpoint.size == *size) && *old_fp == fp {
                    continue;
                }
            }
            let was_serving = serving.remove(name).map(|(d, _)| d);
            match node.lifecycle(name, view.as_ref(), t) {
                Ok(s) => {
                    if was_serving.as_deref() != Some(s.digest.as_str()) {
                        event(t, name, "Serving", None, &format!("{} under {}", s.digest, s.basis));
                        if contained.remove(name).is_some() {
                            node.report(
                                Some(&s.digest),
                                ContainmentReason::UnverifiableTransition,
                                "recovered through the full lifecycle",
                                true,
                                t,
                            );
                        }
                    }
                    serving.insert(name.clone(), (s.digest, fp));
                }
                Err(c) => {
                    let (reason, detail) = (c.contained().reason, c.contained().detail.clone());
                    if contained.get(name).map(|x| x.0) != Some(reason) || was_serving.is_some() {
                        event(t, name, "Contained", Some(reason), &detail);
                        node.report(was_serving.as_deref(), reason, &detail, false, t);
                    }
                    contained.insert(
                        name.clone(),
                        (reason, view.as_ref().map_or(0, |v| v.checkpoint.size), fp),
                    );
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(a.interval_ms.max(10)));
    }
}
