//! The live demonstration (`modelgate demo --serve`): an authority with its
//! console, two nodes with their gateways and an inference server, all in
//! this process, and a loop that plays what governance is for while a person
//! watches the console: calls through both gateways, a changed byte in node
//! 2's copy of the model (Contained, UnauthorizedModification) and its
//! restore, a revocation contained on both nodes and a new version approved,
//! the authority unreachable past the nodes' staleness bound
//! (SyncInterrupted) and back. Each step waits for the state it causes and
//! fails, naming the step, when that state does not come.
//!
//! The inference server is a real llama.cpp server with a generated GGUF
//! model when `llama-cpp-python` is importable, else the demo's own scorer
//! (a fixed answer): the demo needs no model runtime on the machine
//! ([`crate::inference`]).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use modelgate_governance::{
    ApprovalEntry, EntryPayload as _, ModelEntry, NodeEnrollmentEntry, RevocationEntry, RiskTier,
};
use modelgate_runtime::{ModelStatus, Shared};
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::json;

use crate::dev::DevDir;
use crate::governance::{accepted, spawn_gateway};
use crate::inference::Inference;
use crate::{fail, say, Failure};

pub(crate) const MODEL: &str = "credit-scorer";
const TOKEN: &str = "demo-live-caller-token";

/// What `serve` is asked to do.
pub struct LiveOptions {
    /// Where the authority and its console listen.
    pub listen: SocketAddr,
    /// Rounds to play; `None`: until `stop`.
    pub rounds: Option<u64>,
    /// The inference server behind the gateways.
    pub inference: Inference,
}

/// A TCP proxy in front of the authority that the demo can cut: paused, it
/// drops every connection (open ones too), as a network partition would.
struct Cut {
    url: String,
    paused: Arc<AtomicBool>,
}

fn spawn_cut(rt: &tokio::runtime::Runtime, target: SocketAddr) -> Result<Cut, Failure> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(fail)?;
    let url = format!("http://{}", listener.local_addr().map_err(fail)?);
    let paused = Arc::new(AtomicBool::new(false));
    let p = Arc::clone(&paused);
    rt.spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if p.load(Ordering::SeqCst) {
                continue; // dropped: the node sees a connection cut
            }
            let p = Arc::clone(&p);
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                tokio::pin!(copy);
                loop {
                    tokio::select! {
                        _ = &mut copy => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if p.load(Ordering::SeqCst) { return; }
                        }
                    }
                }
            });
        }
    });
    Ok(Cut { url, paused })
}

/// A model version's files: (name, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// Version `k` of the model: its files (the inference server's weights and
/// a config naming the version), its bundle (signed by the dev model key)
/// and its digest.
fn version(
    staging: &Path,
    k: u64,
    weights: &(String, Vec<u8>),
    key: &Path,
) -> Result<(Files, Vec<u8>, String), Failure> {
    let files = vec![
        (
            "config.json".to_owned(),
            format!("{{\"version\": {k}, \"weights\": \"{}\"}}\n", weights.0).into_bytes(),
        ),
        weights.clone(),
    ];
    let _ = fs::remove_dir_all(staging);
    fs::create_dir_all(staging).map_err(fail)?;
    for (n, b) in &files {
        fs::write(staging.join(n), b).map_err(fail)?;
    }
    let pem = fs::read_to_string(key).map_err(fail)?;
    let (manifest, bundle) =
        crate::sign_model(staging, modelgate_oms::PrivateKey::from_pem(&pem, "the dev model key")?)?;
    Ok((files, bundle, hex::encode(manifest.root_digest())))
}

/// Put a version's files and bundle into a node's model directory, each by
/// rename (the node never reads half a file).
fn install(dir: &Path, files: &[(String, Vec<u8>)], bundle: &[u8]) -> Result<(), Failure> {
    fs::create_dir_all(dir).map_err(fail)?;
    for (n, b) in files {
        modelgate_node::files::write_atomic(&dir.join(n), b).map_err(fail)?;
    }
    modelgate_node::files::write_atomic(&dir.join("model.sig"), bundle).map_err(fail)
}

fn read_key(path: &Path) -> Result<SigningKey, Failure> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    SigningKey::from_pkcs8_pem(&fs::read_to_string(path).map_err(fail)?).map_err(fail)
}

fn state_of(node: &Shared) -> ModelStatus {
    node.snapshot()
        .models
        .get(MODEL)
        .cloned()
        .unwrap_or(ModelStatus::Starting)
}

/// Wait until `ok` holds for every node, or fail naming `what`.
fn wait(nodes: &[&Shared], what: &str, secs: u64, ok: impl Fn(&ModelStatus) -> bool) -> Result<Duration, Failure> {
    let started = Instant::now();
    loop {
        if nodes.iter().all(|n| ok(&state_of(n))) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let seen: Vec<String> = nodes.iter().map(|n| format!("{:?}", state_of(n))).collect();
            return Err(Failure::Failed(format!(
                "{what}: not within {secs} s ({})",
                seen.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn contained_with(reason: &'static str) -> impl Fn(&ModelStatus) -> bool {
    move |s| matches!(s, ModelStatus::Contained(w) if w.reason.code() == reason)
}

fn serving(s: &ModelStatus) -> bool {
    matches!(s, ModelStatus::Serving { .. })
}

/// Sleep up to `d`, returning early (true) when `stop` is set.
fn pause(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.load(Ordering::SeqCst)
}

/// A flag Ctrl-C sets: the live demo ends at its next step; a second
/// Ctrl-C ends the process at once (exit 130).
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
            s.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("stopping after this step (Ctrl-C again to quit at once)");
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    });
    stop
}

/// Run the live demonstration in a temporary directory (removed afterwards)
/// until `stop` is set (or `rounds` are played). The first line told to
/// `out` is `console: URL`.
pub fn serve(o: &LiveOptions, out: &mut dyn FnMut(&str), stop: &AtomicBool) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("modelgate-demo-live-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let result = play(&dir, o, out, stop);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn play(dir: &Path, o: &LiveOptions, out: &mut dyn FnMut(&str), stop: &AtomicBool) -> Result<(), Failure> {
    let b = crate::dev::bootstrap(dir)?;
    let d = DevDir::new(dir);
    let authority = b.authority;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(fail)?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(o.listen))
        .map_err(|e| Failure::Setup(format!("couldn't listen on {}: {e}", o.listen)))?;
    let addr = listener.local_addr().map_err(fail)?;
    let console = rt.block_on(async {
        let c = modelgate_console::Console::new(Arc::clone(&authority), "");
        modelgate_console::spawn_refresher(&c);
        modelgate_console::router(c)
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(modelgate_authority::serve_with(
        Arc::clone(&authority),
        listener,
        Some(console),
        async move {
            let _ = stop_rx.await;
        },
    ));
    say!(out, "console: http://{addr}/");
    let cut = spawn_cut(&rt, addr)?;
    let upstream = crate::inference::start(o.inference, &dir.join("inference"), &rt)?;
    say!(out, "inference server: {}", upstream.what);
    let mut live = Live {
        authority,
        signer: read_key(&d.key("dev-signer"))?,
        approver: read_key(&d.key("dev-approver-1"))?,
        staging: dir.join("staging"),
        model_key: d.model_key(),
        weights: upstream.weights.clone(),
        k: 1,
        digest: String::new(),
        nodes: Vec::new(),
        models: Vec::new(),
        agent: modelgate_http::agent(modelgate_http::Timeouts::DEMO_CALL),
    };
    let (files, bundle, digest) = version(&live.staging, 1, &live.weights, &live.model_key)?;
    live.register(&bundle, &digest)?;
    live.digest = digest;
    live.start_nodes(dir, &d, &files, &bundle, &cut.url, &upstream.url, &rt)?;
    let t = wait(&live.all(), "both nodes Serving", 60, serving)?;
    say!(
        out,
        "two nodes verified the log and took {MODEL} 1.1 through the ten lifecycle steps: Serving on both ({} ms)",
        t.as_millis()
    );
    let mut round = 0;
    while !(o.rounds.is_some_and(|r| round >= r) || stop.load(Ordering::SeqCst)) {
        round += 1;
        say!(out, "round {round}");
        live.traffic(out, "through both gateways");
        if round == 1 {
            say!(
                out,
                "  each call is replicated to the authority: http://{addr}/lineage lists them, and a call's page draws its chain and offers its full-chain proof"
            );
        }
        if pause(stop, Duration::from_secs(2))
            || live.tamper(out, stop)?
            || live.revoke_and_replace(out, stop, round)?
            || live.cut_off(out, stop, &cut)?
            || pause(stop, Duration::from_secs(2))
        {
            break;
        }
    }
    say!(out, "stopping");
    for (_, _, shared) in &live.nodes {
        shared.stop();
    }
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    Ok(())
}

/// The live demonstration's world: the authority and its keys, the model's
/// current version, the two nodes and their copies of the model.
struct Live {
    authority: Arc<modelgate_authority::Authority>,
    signer: SigningKey,
    approver: SigningKey,
    staging: PathBuf,
    model_key: PathBuf,
    weights: (String, Vec<u8>),
    /// The version served (1.k).
    k: u64,
    digest: String,
    /// (id, gateway URL, its shared state).
    nodes: Vec<(String, String, Arc<Shared>)>,
    models: Vec<PathBuf>,
    agent: ureq::Agent,
}

impl Live {
    fn all(&self) -> Vec<&Shared> {
        self.nodes.iter().map(|n| &*n.2).collect()
    }

    /// Version 1.k registered and approved.
    fn register(&self, bundle: &[u8], digest: &str) -> Result<(), Failure> {
        let k = self.k;
        accepted(
            &self.authority,
            ModelEntry::new(MODEL, &format!("1.{k}"), bundle)
                .sign(&[&self.signer])
                .map_err(fail)?,
            "the model's registration",
        )?;
        let now = modelgate_runtime::Clock::now(&modelgate_runtime::SystemClock);
        accepted(
            &self.authority,
            ApprovalEntry::new(
                digest,
                vec!["prod/credit/*".into()],
                now.saturating_sub(60),
                now + 86_400,
                RiskTier::Low,
                &format!("CHG-{k}"),
            )
            .sign(&[&self.approver])
            .map_err(fail)?,
            "the approval",
        )?;
        Ok(())
    }

    /// Two nodes, each with its key, enrollment, configuration, a copy of
    /// the model and a gateway.
    #[allow(clippy::too_many_arguments)]
    fn start_nodes(
        &mut self,
        dir: &Path,
        d: &DevDir,
        files: &Files,
        bundle: &[u8],
        authority_url: &str,
        upstream_url: &str,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(), Failure> {
        let nadmin = read_key(&d.key("dev-node-admin"))?;
        let token_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes()));
        for n in 1..=2 {
            let id = format!("node-{n}");
            let ndir = dir.join(&id);
            let model = ndir.join("model");
            install(&model, files, bundle)?;
            let seed: [u8; 32] = SigningKey::generate(&mut rand_core::OsRng).to_bytes();
            let key = SignerKey::from_seed(&format!("{id}/lineage"), KeyType::Ed25519, &seed).map_err(fail)?;
            modelgate_node::files::write_new(
                &ndir.join("node.skey"),
                format!("{}\n", key.to_private_string()).as_bytes(),
                0o600,
                false,
            )
            .map_err(fail)?;
            accepted(
                &self.authority,
                NodeEnrollmentEntry::new(&id, &key.verifier().to_string(), vec!["prod/*".into()])
                    .sign(&[&nadmin])
                    .map_err(fail)?,
                "a node's enrollment",
            )?;
            let toml = format!(
                "node = \"{id}\"\nauthority = \"{authority_url}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\n\
                 max_staleness_seconds = 4\ndata_dir = \"data\"\nanchor_interval_seconds = 2\nheartbeat_interval_seconds = 2\n\
                 listen = \"127.0.0.1:0\"\nupstream = \"{upstream_url}\"\n\n[models.{MODEL}]\ndir = \"{}\"\nbundle = \"{}\"\n\n\
                 [callers.scoring-service]\ntoken_sha256 = \"{token_sha}\"\nscopes = [\"prod/credit/scoring\"]\n",
                d.authority().join("trust-root.dsse.json").display(),
                model.display(),
                model.join("model.sig").display()
            );
            fs::write(ndir.join("node.toml"), toml).map_err(fail)?;
            let (url, shared) = spawn_gateway(&ndir.join("node.toml"), rt)?;
            self.nodes.push((id, url, shared));
            self.models.push(model);
        }
        Ok(())
    }

    /// A call's status and, when answered, the model's words.
    fn call(&self, url: &str) -> (u16, Option<String>) {
        let Ok(mut r) = self
            .agent
            .post(&format!("{url}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(json!({"model": MODEL, "max_tokens": 12, "messages": [{"role": "user", "content": "score applicant 42"}]}).to_string())
        else {
            return (0, None);
        };
        let status = r.status().as_u16();
        let body: serde_json::Value = r
            .body_mut()
            .read_to_string()
            .ok()
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default();
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .map(|s| s.trim().to_owned());
        (status, text.filter(|_| status == 200))
    }

    /// Ten calls through each gateway, tallied by status.
    fn traffic(&self, out: &mut dyn FnMut(&str), what: &str) {
        let mut tally = std::collections::BTreeMap::<(String, u16), u32>::new();
        let mut answer = None;
        for _ in 0..10 {
            for (id, url, _) in &self.nodes {
                let (status, text) = self.call(url);
                *tally.entry((id.clone(), status)).or_default() += 1;
                answer = answer.or(text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let said: Vec<String> = tally.iter().map(|((id, st), n)| format!("{id}: {n} × {st}")).collect();
        say!(out, "  calls {what}: {}", said.join(", "));
        if let Some(a) = answer {
            say!(out, "  the model answered: {a:?}");
        }
    }

    /// One changed byte in node 2's copy: contained there, then restored.
    /// True when asked to stop.
    fn tamper(&self, out: &mut dyn FnMut(&str), stop: &AtomicBool) -> Result<bool, Failure> {
        let all = self.all();
        let weights_name = &self.weights.0;
        let weights = self.models[1].join(weights_name);
        let original = fs::read(&weights).map_err(fail)?;
        let mut changed = original.clone();
        changed[1234] ^= 0x01;
        fs::write(&weights, &changed).map_err(fail)?;
        let t = wait(
            &all[1..],
            "node 2 contains the changed model",
            20,
            contained_with("UnauthorizedModification"),
        )?;
        say!(out, "one byte of {weights_name} changed on node-2: Contained UnauthorizedModification in {} ms; node-1 still Serving", t.as_millis());
        self.traffic(out, "while node-2 contains");
        if pause(stop, Duration::from_secs(3)) {
            return Ok(true);
        }
        fs::write(&weights, &original).map_err(fail)?;
        let t = wait(&all, "node 2 serves the restored model", 30, serving)?;
        say!(
            out,
            "restored: node-2 Serving again, through all ten steps ({} ms)",
            t.as_millis()
        );
        Ok(false)
    }

    /// A revocation, contained on both nodes, then the next version signed,
    /// registered, approved and served. True when asked to stop.
    fn revoke_and_replace(
        &mut self,
        out: &mut dyn FnMut(&str),
        stop: &AtomicBool,
        round: u64,
    ) -> Result<bool, Failure> {
        accepted(
            &self.authority,
            RevocationEntry::new(&self.digest, "drift found in monitoring", &format!("INC-{round}"))
                .sign(&[&self.approver])
                .map_err(fail)?,
            "the revocation",
        )?;
        let t = wait(
            &self.all(),
            "both nodes contain the revoked model",
            20,
            |s| matches!(s, ModelStatus::Contained(w) if w.decision.map(|d| d.as_str()) == Some("Revoked")),
        )?;
        say!(
            out,
            "{MODEL} 1.{} revoked: Contained on both nodes in {} ms (403 Revoked to callers)",
            self.k,
            t.as_millis()
        );
        self.traffic(out, "after the revocation");
        if pause(stop, Duration::from_secs(3)) {
            return Ok(true);
        }
        self.k += 1;
        let (files, bundle, next) = version(&self.staging, self.k, &self.weights, &self.model_key)?;
        self.register(&bundle, &next)?;
        self.digest = next;
        for m in &self.models {
            install(m, &files, &bundle)?;
        }
        let t = wait(&self.all(), "both nodes serve the new version", 30, serving)?;
        say!(
            out,
            "{MODEL} 1.{} signed, registered and approved: Serving on both nodes ({} ms)",
            self.k,
            t.as_millis()
        );
        Ok(false)
    }

    /// The authority unreachable past the staleness bound, then back. True
    /// when asked to stop.
    fn cut_off(&self, out: &mut dyn FnMut(&str), stop: &AtomicBool, cut: &Cut) -> Result<bool, Failure> {
        cut.paused.store(true, Ordering::SeqCst);
        let t = wait(
            &self.all(),
            "both nodes contain without the authority",
            30,
            contained_with("SyncInterrupted"),
        )?;
        say!(
            out,
            "the authority cut off from the nodes: Contained SyncInterrupted on both after {} ms (the bound is 4 s)",
            t.as_millis()
        );
        let stopped = pause(stop, Duration::from_secs(3));
        cut.paused.store(false, Ordering::SeqCst);
        if stopped {
            return Ok(true);
        }
        let t = wait(&self.all(), "both nodes serve once the authority is back", 30, serving)?;
        say!(
            out,
            "the authority reachable again: Serving on both nodes ({} ms)",
            t.as_millis()
        );
        Ok(false)
    }
}
