//! The node's runtime, shared by `node run`, `exec` and `node serve`: one
//! loop thread syncs with the authority, keeps every model's lifecycle
//! current, anchors the lineage log, sends heartbeats, and publishes a
//! snapshot (what is Serving, under which governance view) that the gateway
//! reads on every request without waiting for the loop.
//!
//! The loop wakes on its interval, and at once when inotify reports a change
//! in a model's files (a changed model is re-verified, whatever its
//! fingerprint says). The fingerprint check stays as the second line: writes
//! through a shared mapping do not raise inotify events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::DecisionRequest;
use modelgate_node::config::NodeConfig;
use modelgate_node::{ContainmentReason, View};
use modelgate_store::{Auditor, LogStore, Nodes, Receipt, Sequencer, SequencerConfig, SqliteStore};
use modelgate_tlog::SignerKey;
use serde_json::{json, Value};

use crate::Failure;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HTTP to the authority: the sync's reads, entries and heartbeats, proofs.
pub(crate) struct Http {
    base: String,
    agent: ureq::Agent,
}

impl modelgate_node::Fetch for Http {
    fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        match self.get_any(path, 64 << 20)? {
            (200, body) => Ok(body),
            (status, _) => Err(format!("{}: HTTP {status}", self.url(path))),
        }
    }
}

impl Http {
    pub(crate) fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The configured authority answers, or the sync fails: a
            // redirect elsewhere is never followed.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn body(url: &str, mut r: ureq::http::Response<ureq::Body>, limit: u64) -> Result<(u16, Vec<u8>), String> {
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((status, body))
    }

    /// GET `path`; the status and at most `limit` bytes of body, whatever the status.
    pub(crate) fn get_any(&self, path: &str, limit: u64) -> Result<(u16, Vec<u8>), String> {
        let url = self.url(path);
        let r = self.agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
        Self::body(&url, r, limit)
    }

    /// POST `body`; returns the status and the response body.
    pub(crate) fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let url = self.url(path);
        let r = self
            .agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| format!("{url}: {e}"))?;
        Self::body(&url, r, 1 << 20)
    }
}

/// The node's own lineage log: a group-commit writer and a read-only
/// connection for audits and proofs.
pub(crate) struct Lineage {
    seq: Sequencer<SqliteStore>,
    reader: Mutex<SqliteStore>,
    auditor: Mutex<Auditor>,
}

impl Lineage {
    fn open(path: &Path, key: &SignerKey) -> Result<Self, String> {
        let store = SqliteStore::open(path).map_err(|e| e.to_string())?;
        let log = modelgate_store::Log::open(store, key.clone()).map_err(|e| e.to_string())?;
        let seq = Sequencer::start(log, SequencerConfig::default()).map_err(|e| e.to_string())?;
        let reader = SqliteStore::open_read_only(path).map_err(|e| e.to_string())?;
        let policy = modelgate_tlog::CheckpointPolicy::new(key.verifier(), vec![], 0).map_err(|e| e.to_string())?;
        Ok(Self {
            seq,
            reader: Mutex::new(reader),
            auditor: Mutex::new(Auditor::new(policy)),
        })
    }

    /// Append and wait until durable.
    pub(crate) fn append(&self, record: Vec<u8>) -> Result<Receipt, String> {
        self.seq.submit(record).map_err(|e| e.to_string())
    }

    /// Append without waiting; `then` runs (on the writer thread) once the
    /// record is durable or has failed. Returns an error if it could not even be queued.
    pub(crate) fn append_then(
        &self,
        record: Vec<u8>,
        then: impl FnOnce(Result<Receipt, String>) + Send + 'static,
    ) -> Result<(), String> {
        self.seq
            .submit_with(record, move |r| then(r.map_err(|e| e.to_string())))
            .map_err(|e| e.to_string())
    }

    /// Append; the future resolves once the record is durable.
    pub(crate) fn append_async(
        &self,
        record: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Receipt, String>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.append_then(record, move |r| {
            let _ = tx.send(r);
        });
        async move {
            queued?;
            rx.await
                .unwrap_or_else(|_| Err("the lineage writer exited mid-batch".into()))
        }
    }

    /// Run `f` on the read-only connection, refreshed to the latest size.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&SqliteStore) -> Result<T, String>) -> Result<T, String> {
        let mut r = self
            .reader
            .lock()
            .map_err(|_| "lineage reader lock poisoned".to_owned())?;
        r.refresh_size().map_err(|e| e.to_string())?;
        f(&r)
    }

    /// Extend the audit to the latest checkpoint; returns the audited size.
    fn audit(&self) -> Result<u64, String> {
        let mut a = self.auditor.lock().map_err(|_| "auditor lock poisoned".to_owned())?;
        self.read(|r| a.advance(r).map_err(|e| e.to_string()))
    }
}

/// A lineage checkpoint anchored in the governance log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Anchor {
    /// Lineage log size anchored.
    pub(crate) size: u64,
    /// Index of the node-anchor entry in the governance log.
    pub(crate) index: u64,
}

/// A model's state as the gateway sees it.
#[derive(Clone, Debug)]
pub(crate) enum ModelStatus {
    /// Not yet through the lifecycle.
    Starting,
    /// Through all ten steps.
    Serving { digest: String, basis: String },
    /// Not serving, and why.
    Contained { reason: ContainmentReason, detail: String },
}

impl ModelStatus {
    /// The state's name, as events, status, metrics and heartbeats show it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ModelStatus::Starting => "Starting",
            ModelStatus::Serving { .. } => "Serving",
            ModelStatus::Contained { .. } => "Contained",
        }
    }

    pub(crate) fn json(&self) -> Value {
        match self {
            ModelStatus::Starting => json!({"state": self.name()}),
            ModelStatus::Serving { digest, basis } => json!({"state": self.name(), "digest": digest, "basis": basis}),
            ModelStatus::Contained { reason, detail } => {
                json!({"state": self.name(), "reason": format!("{reason:?}"), "detail": detail})
            }
        }
    }
}

/// What the loop publishes after each pass.
pub(crate) struct Snapshot {
    pub(crate) time: u64,
    pub(crate) view: Option<Arc<View>>,
    pub(crate) models: BTreeMap<String, ModelStatus>,
}

impl Snapshot {
    /// Why this snapshot no longer proves anything at `t`, if it does not:
    /// no view, a view older than `max` seconds, or a loop that has not
    /// published for `max` seconds (stalled on a hung authority, a stuck store).
    pub(crate) fn stale(&self, max: u64, t: u64) -> Option<String> {
        let Some(view) = &self.view else {
            return Some("no verified governance view".into());
        };
        let (view_age, loop_age) = (t.saturating_sub(view.authority_time), t.saturating_sub(self.time));
        (view_age > max || loop_age > max).then(|| {
            format!(
                "the governance view is {view_age} s old and the node last checked {loop_age} s ago (bound {max} s)"
            )
        })
    }
}

/// State shared between the loop and readers (gateway, exec).
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) lineage: Result<Arc<Lineage>, String>,
    pub(crate) anchors: Mutex<Vec<Anchor>>,
    /// Wakes the loop (and makes it re-verify the named models).
    pub(crate) wake: Mutex<Sender<Wake>>,
    /// Counters the gateway adds to heartbeats (requests, denials).
    pub(crate) counters: Mutex<BTreeMap<String, u64>>,
    /// File changes seen and re-verified, per model.
    pub(crate) changes: Changes,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => Arc::clone(&s),
            // A poisoned lock means the loop panicked: nothing is proven any more.
            Err(_) => Arc::new(Snapshot {
                time: now(),
                view: None,
                models: BTreeMap::new(),
            }),
        }
    }

    /// Did the model's files change after its last verification?
    pub(crate) fn unverified_change(&self, model: &str) -> bool {
        // A poisoned lock proves nothing: treat it as a change.
        self.changes
            .lock()
            .map_or(true, |c| c.get(model).is_some_and(|(seen, verified)| seen != verified))
    }

    pub(crate) fn count(&self, name: &str) {
        if let Ok(mut c) = self.counters.lock() {
            // Counted on every call: no allocation once the name is known.
            match c.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    c.insert(name.to_owned(), 1);
                }
            }
        }
    }
}

/// Why the loop woke early.
pub(crate) enum Wake {
    /// A model's files changed.
    Files(String),
    /// Stop the loop.
    Stop,
}

/// One state change, as printed by `node run`.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) time: u64,
    pub(crate) model: String,
    pub(crate) state: &'static str,
    pub(crate) reason: Option<ContainmentReason>,
    pub(crate) detail: String,
}

impl Event {
    pub(crate) fn json(&self) -> Value {
        json!({"time": self.time, "model": self.model, "state": self.state,
               "reason": self.reason.map(|r| format!("{r:?}")), "detail": self.detail})
    }

    /// One JSON line on stdout, flushed (scripts and tests follow it live).
    pub(crate) fn print(&self) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.json()).and_then(|()| out.flush());
    }
}

/// A contained model's lifecycle.
pub(crate) type Contained = Box<modelgate_node::lifecycle::Lifecycle<modelgate_node::lifecycle::Contained>>;

/// A model that made it through all ten steps.
pub(crate) struct ServingModel {
    pub(crate) digest: String,
    pub(crate) basis: String,
}

/// A node's runtime pieces, set up from its configuration.
pub(crate) struct Node {
    pub(crate) c: NodeConfig,
    key: SignerKey,
    syncer: modelgate_node::sync::Syncer,
    pub(crate) fetch: Http,
    trusted_path: PathBuf,
    /// What `trusted_path` holds, so an unchanged checkpoint is not rewritten.
    persisted: Option<modelgate_node::sync::Trusted>,
    lineage: Result<Arc<Lineage>, String>,
    reports: modelgate_node::report::ReportSequence,
}

impl Node {
    pub(crate) fn open(config: &Path) -> Result<Self, Failure> {
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
        let fetch = Http::new(&c.authority);
        let persisted = trusted.clone();
        let syncer = Syncer::new(&pinned, c.max_staleness_seconds, trusted).map_err(|e| usage(e.to_string()))?;
        // A lineage log that cannot be opened is not a usage error: the node
        // runs, and every model is contained (AuditDiscontinuity) until it can.
        let lineage = Lineage::open(&c.data_dir.join("lineage.db"), &key).map(Arc::new);
        let reports =
            modelgate_node::report::ReportSequence::open(&c.data_dir.join("report-sequence")).map_err(usage)?;
        Ok(Self {
            c,
            key,
            syncer,
            fetch,
            trusted_path,
            persisted,
            lineage,
            reports,
        })
    }

    /// Sync; on success persist the trusted checkpoint before it is used.
    ///
    /// Only a checkpoint that differs from the persisted one is written: the
    /// write is an fsync and a rename, and it used to be repeated on every pass
    /// (four a second) with nothing changed, each time a filesystem journal
    /// commit beside the lineage log's own fsyncs.
    pub(crate) fn sync(&mut self, t: u64) -> Result<&View, modelgate_node::SyncError> {
        let v = self.syncer.sync(&self.fetch, t)?;
        let trusted = v.trusted();
        if self.persisted.as_ref() != Some(&trusted) {
            let bytes = serde_json::to_vec_pretty(&trusted).unwrap_or_default();
            if crate::oms_cmd::write_atomic(&self.trusted_path, &bytes).is_err() {
                return Err(modelgate_node::SyncError {
                    reason: ContainmentReason::AuditDiscontinuity,
                    detail: format!("couldn't persist {}", self.trusted_path.display()),
                });
            }
            self.persisted = Some(trusted);
        }
        self.syncer.view().ok_or_else(|| modelgate_node::SyncError {
            reason: ContainmentReason::StateDivergence,
            detail: "the sync kept no view".into(),
        })
    }

    /// All ten steps for one model; the lifecycle is recorded in the lineage log.
    pub(crate) fn lifecycle(&self, name: &str, view: Option<&View>, t: u64) -> Result<ServingModel, Contained> {
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
        let lineage = self.lineage.as_ref().map_err(Clone::clone);
        let l = l.validate_telemetry(lineage.and_then(|g| g.read(|r| r.size().map_err(|e| e.to_string()))), t)?;
        let (l, digest, basis) = l.evaluate(v, t)?;
        let l = l.approve(t);
        let steps: Vec<_> = l
            .transitions()
            .iter()
            .map(|x| json!({"step": x.step, "time": x.time, "detail": x.detail}))
            .collect();
        let record =
            serde_json::to_vec(&json!({"type": "lifecycle", "model": name, "digest": digest, "transitions": steps}))
                .map_err(|e| format!("the lifecycle record could not be encoded: {e}"));
        // A record that cannot be encoded is not persisted: the model is contained.
        let durable = match (&self.lineage, record) {
            (Ok(g), Ok(record)) => g.append(record).map(|r| r.index),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
        };
        let l = l.persist(durable, t)?;
        let audited = match &self.lineage {
            Ok(g) => g.audit(),
            Err(e) => Err(e.clone()),
        };
        let l = l.verify_audit(audited, t)?;
        let s = l.serve(digest, basis, v.checkpoint.size, t);
        Ok(ServingModel {
            digest: s.serving().digest.clone(),
            basis: s.serving().basis.clone(),
        })
    }

    /// A signed containment (or recovery) report for the authority, with the
    /// node's next report sequence; `None` when it cannot be numbered.
    pub(crate) fn report_entry(
        &self,
        model_digest: Option<&str>,
        reason: ContainmentReason,
        detail: &str,
        recovered: bool,
        t: u64,
    ) -> Option<Vec<u8>> {
        let models: Vec<String> = model_digest.map(str::to_owned).into_iter().collect();
        let logged = self
            .syncer
            .view()
            .and_then(|v| v.state.nodes.get(&self.c.node))
            .and_then(|n| n.last_report.as_ref())
            .map_or(0, |r| r.sequence);
        let sequence = match self.reports.next(logged) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("not reporting {reason:?}: {e}");
                return None;
            }
        };
        modelgate_node::report::containment_report(
            &self.key,
            &self.c.node,
            sequence,
            &models,
            reason,
            detail,
            recovered,
            t,
        )
        .map_err(|e| tracing::warn!("not reporting {reason:?}: {e}"))
        .ok()
    }
}

/// What the loop sends to the authority without waiting for it: a slow or
/// hanging authority must not hold up the passes that keep the gateway's
/// snapshot fresh (an aged snapshot is a SyncInterrupted for every call).
enum Outgoing {
    Report(Vec<u8>),
    Heartbeat {
        path: String,
        body: Vec<u8>,
    },
    /// An anchor entry for lineage size `size`; its outcome comes back.
    Anchor {
        entry: Vec<u8>,
        size: u64,
    },
}

/// The thread that posts [`Outgoing`] writes, in order, and the anchors'
/// outcomes (lineage size, log index or the refusal).
struct Courier {
    tx: mpsc::SyncSender<Outgoing>,
    anchored: Receiver<(u64, Result<u64, String>)>,
}

/// Writes that may wait for the courier before new ones are dropped
/// (reports and heartbeats are best effort; an anchor is tried again).
const COURIER_QUEUE: usize = 64;

impl Courier {
    fn start(authority: &str) -> Result<Self, Failure> {
        let (tx, rx) = mpsc::sync_channel::<Outgoing>(COURIER_QUEUE);
        let (done, anchored) = mpsc::channel();
        let http = Http::new(authority);
        std::thread::Builder::new()
            .name("modelgate-courier".into())
            .spawn(move || {
                for out in rx {
                    match out {
                        Outgoing::Report(entry) => {
                            if let Err(e) = http.post("/api/v1/entries", "application/json", &entry) {
                                tracing::warn!("containment report: {e}");
                            }
                        }
                        Outgoing::Heartbeat { path, body } => {
                            if let Err(e) = http.post(&path, "text/plain", &body) {
                                tracing::debug!("heartbeat: {e}");
                            }
                        }
                        Outgoing::Anchor { entry, size } => {
                            let r =
                                http.post("/api/v1/entries", "application/json", &entry)
                                    .and_then(|(status, body)| {
                                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                        if status != 201 {
                                            return Err(format!("HTTP {status}: {v}"));
                                        }
                                        v["index"]
                                            .as_u64()
                                            .ok_or_else(|| format!("no index in the answer: {v}"))
                                    });
                            if done.send((size, r)).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Failure::Usage(format!("starting the courier thread: {e}")))?;
        Ok(Self { tx, anchored })
    }

    /// Queue `out`; false when the queue is full (the authority is slower
    /// than the node's writes) or the courier is gone.
    fn send(&self, out: Outgoing) -> bool {
        self.tx.try_send(out).is_ok()
    }
}

/// Files of a model: (path, length, modification time).
type Fingerprint = Vec<(PathBuf, u64, std::time::SystemTime)>;

/// A cheap fingerprint of a model's files (path, length, modification
/// time): when it changes, the files are re-hashed.
fn fingerprint(dir: &Path) -> Fingerprint {
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

/// Watch every model's directories with inotify; each event wakes the loop
/// naming the model. New subdirectories are watched as they appear.
/// Per model: (changes seen by inotify, changes re-verified since). While the
/// two differ the model's files changed after its last verification, and the
/// gateway refuses it without waiting for the loop.
pub(crate) type Changes = Arc<Mutex<BTreeMap<String, (u64, u64)>>>;

fn watch(models: Vec<(String, PathBuf)>, wake: Sender<Wake>, changes: Changes) -> Result<(), String> {
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
    let flags = WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE
        | WatchFlags::MOVE_SELF
        | WatchFlags::DONT_FOLLOW;
    let mut by_wd: BTreeMap<i32, (String, PathBuf)> = BTreeMap::new();
    fn add(
        fd: &rustix::fd::OwnedFd,
        flags: WatchFlags,
        by_wd: &mut BTreeMap<i32, (String, PathBuf)>,
        model: &str,
        root: &Path,
    ) {
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            if let Ok(wd) = inotify::add_watch(fd, &d, flags) {
                by_wd.insert(wd, (model.to_owned(), d.clone()));
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
    for (name, dir) in &models {
        add(&fd, flags, &mut by_wd, name, dir);
    }
    std::thread::Builder::new()
        .name("modelgate-inotify".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                let (wd, mask, name) = match reader.next() {
                    Ok(ev) => (
                        ev.wd(),
                        ev.events(),
                        ev.file_name().map(|n| n.to_string_lossy().into_owned()),
                    ),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                };
                let Some((model, dir)) = by_wd.get(&wd).cloned() else {
                    continue;
                };
                if mask.contains(ReadFlags::ISDIR) && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    if let Some(n) = name {
                        add(&fd, flags, &mut by_wd, &model, &dir.join(n));
                    }
                }
                if let Ok(mut c) = changes.lock() {
                    c.entry(model.clone()).or_default().0 += 1;
                }
                if wake.send(Wake::Files(model)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("starting the inotify thread: {e}"))?;
    Ok(())
}

/// The loop's state.
pub(crate) struct Runtime {
    node: Node,
    shared: Arc<Shared>,
    rx: Receiver<Wake>,
    names: Vec<String>,
    /// Serving models: digest, basis, fingerprint.
    serving: BTreeMap<String, (String, String, Fingerprint)>,
    /// Contained models: reason, detail, log size when contained, fingerprint.
    contained: BTreeMap<String, (ContainmentReason, String, u64, Fingerprint)>,
    view: Option<Arc<View>>,
    dirty: BTreeSet<String>,
    anchor_problem: Option<String>,
    unanchored_since: Option<u64>,
    last_anchor_try: Option<Instant>,
    /// The lineage size of the anchor the courier is posting.
    anchor_in_flight: Option<u64>,
    last_heartbeat: Option<Instant>,
    courier: Courier,
    /// The serving check repeats the same decision every pass; it changes
    /// only with the state (the cache is keyed by the state digest).
    cache: modelgate_governance::DecisionCache,
    pub(crate) interval: Duration,
}

impl Runtime {
    /// Set up the node from its configuration and start watching its models.
    pub(crate) fn open(config: &Path, interval: Duration) -> Result<Self, Failure> {
        let node = Node::open(config)?;
        let (tx, rx) = mpsc::channel();
        let names: Vec<String> = node.c.models.keys().cloned().collect();
        let models: Vec<(String, PathBuf)> = node.c.models.iter().map(|(n, m)| (n.clone(), m.dir.clone())).collect();
        let changes: Changes = Arc::default();
        if let Err(e) = watch(models, tx.clone(), Arc::clone(&changes)) {
            tracing::warn!("{e}; model files are checked every {} ms instead", interval.as_millis());
        }
        let anchors = load_anchors(&node.c.data_dir.join("anchors.jsonl"));
        let courier = Courier::start(&node.c.authority)?;
        let shared = Arc::new(Shared {
            config: node.c.clone(),
            snapshot: RwLock::new(Arc::new(Snapshot {
                time: now(),
                view: None,
                models: names.iter().map(|n| (n.clone(), ModelStatus::Starting)).collect(),
            })),
            lineage: node.lineage.clone(),
            anchors: Mutex::new(anchors),
            wake: Mutex::new(tx),
            counters: Mutex::new(BTreeMap::new()),
            changes,
        });
        Ok(Self {
            node,
            shared,
            rx,
            names,
            serving: BTreeMap::new(),
            contained: BTreeMap::new(),
            view: None,
            dirty: BTreeSet::new(),
            anchor_problem: None,
            unanchored_since: None,
            last_anchor_try: None,
            anchor_in_flight: None,
            last_heartbeat: None,
            courier,
            cache: modelgate_governance::DecisionCache::new(1024),
            interval,
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Run passes until stopped (`Wake::Stop`), handing each state change to `on_event`.
    pub(crate) fn run(mut self, mut on_event: impl FnMut(&Event)) {
        loop {
            for e in self.step() {
                on_event(&e);
            }
            if !self.wait() {
                return;
            }
        }
    }

    /// [`Runtime::run`] on a thread of its own.
    pub(crate) fn spawn(
        self,
        on_event: impl FnMut(&Event) + Send + 'static,
    ) -> Result<std::thread::JoinHandle<()>, Failure> {
        std::thread::Builder::new()
            .name("modelgate-node-loop".into())
            .spawn(move || self.run(on_event))
            .map_err(|e| Failure::Usage(format!("starting the node loop: {e}")))
    }

    /// Sleep until the interval passes or something wakes the loop.
    /// Returns false when asked to stop.
    fn wait(&mut self) -> bool {
        match self.rx.recv_timeout(self.interval) {
            Ok(Wake::Files(m)) => {
                self.dirty.insert(m);
                // Let a burst of writes settle for a moment, then go.
                std::thread::sleep(Duration::from_millis(20));
                while let Ok(w) = self.rx.try_recv() {
                    match w {
                        Wake::Files(m) => {
                            self.dirty.insert(m);
                        }
                        Wake::Stop => return false,
                    }
                }
                true
            }
            Ok(Wake::Stop) => false,
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Tell the authority, through the courier (best effort: the containment
    /// itself never waits for it).
    fn report(&self, model_digest: Option<&str>, reason: ContainmentReason, detail: &str, recovered: bool, t: u64) {
        if let Some(entry) = self.node.report_entry(model_digest, reason, detail, recovered, t) {
            if !self.courier.send(Outgoing::Report(entry)) {
                tracing::warn!("the authority is not keeping up; a {reason:?} report was dropped");
            }
        }
    }

    fn contain(&mut self, events: &mut Vec<Event>, name: &str, reason: ContainmentReason, detail: &str, t: u64) {
        let was = self.serving.remove(name).map(|(d, _, _)| d);
        let known = self.contained.get(name).map(|x| x.0);
        if was.is_some() || known != Some(reason) {
            events.push(Event {
                time: t,
                model: name.to_owned(),
                state: "Contained",
                reason: Some(reason),
                detail: detail.to_owned(),
            });
            self.report(was.as_deref(), reason, detail, false, t);
        }
        let size = self.view.as_ref().map_or(0, |v| v.checkpoint.size);
        let fp = fingerprint(&self.node.c.models[name].dir);
        self.contained
            .insert(name.to_owned(), (reason, detail.to_owned(), size, fp));
    }

    /// One pass: sync, anchor, heartbeat, every model; then publish.
    fn step(&mut self) -> Vec<Event> {
        let t = now();
        let mut events = Vec::new();
        let sync_failure = match self.node.sync(t) {
            Ok(v) => {
                let same = self
                    .view
                    .as_ref()
                    .is_some_and(|old| old.checkpoint == v.checkpoint && old.authority_time == v.authority_time);
                if !same {
                    self.view = Some(Arc::new(v.clone()));
                }
                None
            }
            Err(e) => {
                let fatal = e.reason != ContainmentReason::SyncInterrupted;
                let stale = self
                    .view
                    .as_ref()
                    .is_none_or(|v| t.saturating_sub(v.authority_time) > self.node.c.max_staleness_seconds);
                if fatal || stale {
                    self.view = None;
                    Some((e.reason, e.detail))
                } else {
                    None
                }
            }
        };
        self.anchor(t);
        for name in self.names.clone() {
            if let Some((reason, detail)) = &sync_failure {
                self.contain(&mut events, &name, *reason, detail, t);
                continue;
            }
            if let Some(p) = self.anchor_problem.clone() {
                self.contain(&mut events, &name, ContainmentReason::AuditDiscontinuity, &p, t);
                continue;
            }
            let fp = fingerprint(&self.node.c.models[&name].dir);
            // The change generation this pass verifies against (read before
            // hashing: a change during the re-hash leaves the model pending).
            let seen = self.shared.changes.lock().ok().and_then(|c| c.get(&name).copied());
            let dirty = self.dirty.remove(&name) || seen.is_some_and(|(s, v)| s != v);
            if let Some((digest, _, old_fp)) = self.serving.get(&name).cloned() {
                // Serving: the decision must still allow it, and the files must not change.
                let req = DecisionRequest {
                    model: digest.clone(),
                    scope: self.node.c.scopes[0].clone(),
                    node: self.node.c.node.clone(),
                    principal: format!("node:{}", self.node.c.node),
                    groups: vec![],
                    attributes: vec![],
                };
                let cache = &mut self.cache;
                let denied = self
                    .view
                    .as_ref()
                    .map(|v| cache.decide(&v.state, &req, t))
                    .filter(|d| !d.allow);
                if let Some(d) = denied {
                    let detail = format!("{:?}: {}", d.reasons, d.detail);
                    self.contain(
                        &mut events,
                        &name,
                        ContainmentReason::UnverifiableTransition,
                        &detail,
                        t,
                    );
                    continue;
                }
                if fp == old_fp && !dirty {
                    continue;
                }
            } else if let Some((reason, _, size, old_fp)) = self.contained.get(&name) {
                // Contained: retry when the log or the files changed, or when
                // the cause may pass by itself (the lineage store was busy or
                // unwritable, the authority was away).
                let transient = matches!(
                    reason,
                    ContainmentReason::AuditDiscontinuity | ContainmentReason::SyncInterrupted
                );
                if !transient
                    && self.view.as_ref().is_none_or(|v| v.checkpoint.size == *size)
                    && *old_fp == fp
                    && !dirty
                {
                    continue;
                }
            }
            let was_serving = self.serving.get(&name).map(|(d, _, _)| d.clone());
            let outcome = self.node.lifecycle(&name, self.view.as_deref(), t);
            // Whatever the outcome, the files as of `seen` have been judged:
            // Serving if they verify, Contained (which the gateway refuses) if not.
            if let (Some((s, _)), Ok(mut c)) = (seen, self.shared.changes.lock()) {
                if let Some(e) = c.get_mut(&name) {
                    e.1 = s;
                }
            }
            match outcome {
                Ok(s) => {
                    if was_serving.as_deref() != Some(s.digest.as_str()) {
                        events.push(Event {
                            time: t,
                            model: name.clone(),
                            state: "Serving",
                            reason: None,
                            detail: format!("{} under {}", s.digest, s.basis),
                        });
                        if self.contained.remove(&name).is_some() {
                            self.report(
                                Some(&s.digest),
                                ContainmentReason::UnverifiableTransition,
                                "recovered through the full lifecycle",
                                true,
                                t,
                            );
                        }
                    }
                    self.serving.insert(name.clone(), (s.digest, s.basis, fp));
                }
                Err(c) => {
                    let (reason, detail) = (c.contained().reason, c.contained().detail.clone());
                    self.contain(&mut events, &name, reason, &detail, t);
                }
            }
        }
        self.publish(t);
        self.heartbeat(t);
        events
    }

    fn publish(&self, t: u64) {
        let models = self
            .names
            .iter()
            .map(|n| {
                let s = if let Some((digest, basis, _)) = self.serving.get(n) {
                    ModelStatus::Serving {
                        digest: digest.clone(),
                        basis: basis.clone(),
                    }
                } else if let Some((reason, detail, _, _)) = self.contained.get(n) {
                    ModelStatus::Contained {
                        reason: *reason,
                        detail: detail.clone(),
                    }
                } else {
                    ModelStatus::Starting
                };
                (n.clone(), s)
            })
            .collect();
        let snap = Arc::new(Snapshot {
            time: t,
            view: self.view.clone(),
            models,
        });
        if let Ok(mut s) = self.shared.snapshot.write() {
            *s = snap;
        }
    }

    /// Anchor the lineage log when it grew and the interval passed; record
    /// an anchoring problem once un-anchored records are older than the
    /// trust root's bound.
    fn anchor(&mut self, t: u64) {
        // What the courier answered for anchors posted earlier.
        while let Ok((size, result)) = self.courier.anchored.try_recv() {
            self.anchor_in_flight = None;
            match result {
                Ok(index) => {
                    let a = Anchor { size, index };
                    if let Ok(mut list) = self.shared.anchors.lock() {
                        list.push(a);
                    }
                    let _ = append_anchor(&self.node.c.data_dir.join("anchors.jsonl"), &a);
                    // The anchor counts once the log shows it (next sync);
                    // the lag clock stops now, it was accepted durably.
                    self.unanchored_since = None;
                    self.anchor_problem = None;
                }
                Err(e) if e.contains("anchor-invalid") => {
                    // The authority proved our log inconsistent with what we
                    // anchored before: no waiting for the bound.
                    self.anchor_problem = Some(format!("the authority refused the lineage anchor: {e}"));
                    return;
                }
                Err(e) => tracing::warn!("anchoring lineage size {size}: {e}"),
            }
        }
        let Ok(lineage) = self.node.lineage.clone() else {
            self.anchor_problem = Some("the lineage log is not open".into());
            return;
        };
        let Some(view) = self.view.clone() else { return };
        let anchored = view.state.nodes.get(&self.node.c.node).and_then(|n| n.anchor.clone());
        let anchored_size = anchored.as_ref().map_or(0, |a| a.size);
        let latest = lineage.read(|r| r.latest_checkpoint().map_err(|e| e.to_string()));
        let (size, note) = match latest {
            Ok(Some(x)) => x,
            Ok(None) => (0, Vec::new()),
            Err(e) => {
                self.anchor_problem = Some(format!("reading the lineage log: {e}"));
                return;
            }
        };
        // What was anchored must still be here, unchanged: a lineage log that
        // lost records or was replaced breaks the audit trail, at once.
        if size < anchored_size {
            self.anchor_problem = Some(format!(
                "the lineage log holds {size} records but {anchored_size} were anchored: records were lost or the log was replaced"
            ));
            return;
        }
        if let (Some(a), true) = (&anchored, size == anchored_size && size > 0) {
            let root = modelgate_tlog::Note::parse(&note)
                .ok()
                .and_then(|n| modelgate_tlog::Checkpoint::parse(n.text()).ok())
                .map(|c| hex::encode(c.root));
            if root.as_deref() != Some(a.root.as_str()) {
                self.anchor_problem = Some(format!(
                    "the lineage log at the anchored size {size} no longer has the anchored root: it was rewritten"
                ));
                return;
            }
        }
        if size <= anchored_size {
            self.unanchored_since = None;
            self.anchor_problem = None;
            return;
        }
        let since = *self.unanchored_since.get_or_insert(t);
        let bound = view
            .state
            .trust_root()
            .map_or(60, |r| r.doc.freshness.anchor_max_age_seconds);
        let due = self
            .last_anchor_try
            .is_none_or(|x| x.elapsed() >= Duration::from_secs(self.node.c.anchor_interval_seconds));
        if due && self.anchor_in_flight.is_none() {
            self.last_anchor_try = Some(Instant::now());
            match self.anchor_entry(&lineage, anchored_size, size, &note) {
                Ok(entry) => {
                    if self.courier.send(Outgoing::Anchor { entry, size }) {
                        self.anchor_in_flight = Some(size);
                    }
                }
                Err(e) => tracing::warn!("anchoring lineage size {size}: {e}"),
            }
        }
        if t.saturating_sub(since) > bound {
            self.anchor_problem = Some(format!(
                "lineage records have been un-anchored for {} s (bound {bound} s)",
                t.saturating_sub(since)
            ));
        }
    }

    /// The signed anchor entry for lineage size `size`, with the consistency
    /// proof from the anchored size `from`.
    fn anchor_entry(&self, lineage: &Lineage, from: u64, size: u64, note: &[u8]) -> Result<Vec<u8>, String> {
        let proof = lineage.read(|r| {
            if from == 0 {
                Ok(vec![])
            } else {
                modelgate_tlog::consistency_proof(from, size, &Nodes(r)).map_err(|e| e.to_string())
            }
        })?;
        let note = String::from_utf8(note.to_vec()).map_err(|e| e.to_string())?;
        let p = json!({"type": "node-anchor", "version": 1, "node": self.node.c.node, "checkpoint": note,
                       "consistency": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>()});
        let bytes = modelgate_governance::to_canonical(&p).map_err(|e| e.to_string())?;
        modelgate_governance::Envelope::sign(&bytes, &[self.node.key.ed25519()]).map_err(|e| e.to_string())
    }

    fn heartbeat(&mut self, t: u64) {
        let due = self
            .last_heartbeat
            .is_none_or(|x| x.elapsed() >= Duration::from_secs(self.node.c.heartbeat_interval_seconds));
        if !due || self.view.is_none() {
            return;
        }
        self.last_heartbeat = Some(Instant::now());
        // What this pass published, so the authority sees what callers see.
        let snap = self.shared.snapshot();
        let models: BTreeMap<&str, Value> = snap.models.iter().map(|(n, s)| (n.as_str(), s.json())).collect();
        let lineage_size = self
            .node
            .lineage
            .as_ref()
            .ok()
            .and_then(|g| g.read(|r| r.size().map_err(|e| e.to_string())).ok());
        let counters = self.shared.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let summary = json!({
            "models": models,
            "checkpoint_size": self.view.as_ref().map(|v| v.checkpoint.size),
            "staleness_seconds": self.view.as_ref().map(|v| t.saturating_sub(v.authority_time)),
            "lineage_size": lineage_size,
            "anchor_problem": self.anchor_problem,
            "counters": counters,
        });
        if let Ok(hb) = modelgate_governance::heartbeat::sign_heartbeat(&self.node.key, &self.node.c.node, t, &summary)
        {
            let path = format!("/api/v1/nodes/{}/heartbeat", self.node.c.node);
            if !self.courier.send(Outgoing::Heartbeat { path, body: hb }) {
                tracing::debug!("heartbeat dropped: the authority is not keeping up");
            }
        }
    }
}

fn load_anchors(path: &Path) -> Vec<Anchor> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // A torn last line (crash mid-write) is skipped; the anchor itself is in
    // the governance log, so only the proof shortcut is lost.
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn append_anchor(path: &Path, a: &Anchor) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(format!("{}\n", json!(a)).as_bytes())?;
    f.sync_data()
}

/// Diagnostics to stderr (RUST_LOG overrides; warnings by default). The
/// node's own events go to stdout as JSON lines.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Stop the loop on SIGTERM or SIGINT (a small signal thread).
pub(crate) fn stop_on_signals(shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    let _ = std::thread::Builder::new()
        .name("modelgate-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            if let Ok(w) = s.wake.lock() {
                let _ = w.send(Wake::Stop);
            }
        });
}
