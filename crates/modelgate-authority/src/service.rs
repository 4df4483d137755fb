//! The authority's core, without HTTP: the writer thread that checks each
//! submission with the fold's rules and appends it with group commit, the
//! state the read API serves, and the freshly cosigned checkpoint.
//!
//! One thread owns the log. It keeps a working copy of the state: it takes a
//! batch of submissions, checks them one by one against that copy with the
//! fold's rules (so two submissions in one batch see each other), appends the
//! accepted ones in one durable step, and only then applies what they change
//! to the published state, under a write lock held for that alone — never
//! across an fsync — and acknowledges. If the append fails, the working copy
//! is reset to the published state, which holds exactly what is durable.
//! Nothing is ever in flight outside this thread, so the log can never hold
//! an entry the fold would refuse, and readers never see an entry that is not
//! durable, nor wait for a disk.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use modelgate_governance::{FoldError, State};
use modelgate_store::{Log, LogStore, StoreError};

use crate::store::StoreAt;

/// The governance log, in whichever database the authority was given.
type Store = Box<dyn LogStore>;
use modelgate_tlog::{CheckpointPolicy, Note, SignerKey};
use serde_json::json;

use crate::data::DataDir;
use crate::error::AuthorityError;

mod writer;
use writer::writer;

/// Most submissions checked and appended together.
pub const BATCH_MAX: usize = 1024;
/// Submissions that may wait before new ones get "busy".
pub const QUEUE_MAX: usize = 8192;
/// Read-only store handles kept open for reads (each holds a page cache).
const READERS_MAX: usize = 16;
/// State summaries kept for recent checkpoint sizes (what syncing nodes ask for).
const SUMMARIES_KEPT: usize = 4096;
/// A durable write that has not returned after this long is reported by
/// `/readyz` as a stalled writer.
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// How often the folded state is snapshotted (when the log grew).
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(30);
/// How often a replica reads what the sequencer appended.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// A replica that has not read the database for this long stops putting
/// fresh timestamps on its checkpoint: nodes then contain at their
/// staleness bound rather than trust a view that may miss a revocation.
pub const REPLICA_GRACE: Duration = Duration::from_secs(5);

/// The reply to a submission.
#[derive(Debug)]
pub enum Outcome {
    /// Durable at `index`, under `checkpoint` (a signed note).
    Accepted {
        /// Log index.
        index: u64,
        /// The signed checkpoint covering it.
        checkpoint: Arc<Vec<u8>>,
    },
    /// The fold's rules refuse it; nothing was appended.
    Refused(FoldError),
    /// The store failed (a full or read-only disk, an I/O error); nothing
    /// was appended, and the same submission may be retried.
    Failed(String),
    /// The log key could not sign the checkpoint (its token is gone):
    /// nothing was appended, and the same submission may be retried.
    SignerUnavailable(String),
    /// This authority is a replica (it lost or never held the sequencer
    /// lease); nothing was appended: submit to the sequencer.
    NotSequencer,
}

struct Submission {
    bytes: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// The checkpoint as served: the log's signed note plus our cosignature.
#[derive(Clone, Debug)]
pub struct Served {
    /// Note bytes.
    pub note: Arc<Vec<u8>>,
    /// Tree size.
    pub size: u64,
    /// Cosignature time.
    pub time: u64,
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Counters {
    /// Entries appended.
    pub appended: AtomicU64,
    /// Submissions refused by the rules.
    pub refused: AtomicU64,
    /// Submissions refused as busy.
    pub busy: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Store failures.
    pub store_failures: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// HTTP responses with status ≥ 400.
    pub http_errors: AtomicU64,
    /// Unauthenticated writes refused by the per-client rate limit.
    pub rate_limited: AtomicU64,
}

/// Why a submission was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// The queue is full ([`QUEUE_MAX`] waiting): retry shortly.
    Busy,
    /// The authority is shutting down.
    ShuttingDown,
    /// The writer stopped (a failure it could not recover from).
    WriterStopped,
}

impl NotQueued {
    /// For people.
    pub fn message(self) -> &'static str {
        match self {
            NotQueued::Busy => "the submission queue is full; retry",
            NotQueued::ShuttingDown => "the authority is shutting down",
            NotQueued::WriterStopped => "the authority's writer has stopped",
        }
    }
}

impl std::fmt::Display for NotQueued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Why the writer is not ready to take writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriterTrouble {
    /// Stopped (shutdown, or a failure it could not recover from).
    Stopped,
    /// A durable write has been in progress for this long (a stuck fsync).
    Stalled(Duration),
    /// The last durable write failed with this error; writes are retried.
    Failing(String),
}

/// Everything the HTTP layer reads.
pub struct Authority {
    /// The data directory.
    pub dir: DataDir,
    /// The state of all durable entries, swapped in after each durable write.
    published: RwLock<Arc<State>>,
    /// Summaries (JSON) of the state at recent checkpoint sizes, oldest
    /// first; the last is the published state's (never empty).
    summaries: Mutex<VecDeque<(u64, Bytes)>>,
    /// The latest signed checkpoint note (without our cosignature).
    latest: Mutex<(u64, Arc<Vec<u8>>)>,
    /// Signalled when `latest` changes (the witness gatherer waits on it).
    latest_changed: Condvar,
    /// When `latest` was appended (for the publication latency).
    latest_at: Mutex<Option<Instant>>,
    /// The last checkpoint that met the trust root's witness quorum, with
    /// the witnesses' cosignatures (never set when no witness is asked).
    witnessed: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    /// The witnesses asked for cosignatures, once started.
    pub witnesses: Mutex<Option<Arc<crate::witness::Witnesses>>>,
    /// What /log/checkpoint serves.
    pub served: RwLock<Served>,
    cosigner: SignerKey,
    log_key: SignerKey,
    own_policy: CheckpointPolicy,
    /// Read-only store handles for tiles and entries.
    readers: Mutex<Vec<Store>>,
    /// Where the log is.
    pub store_at: StoreAt,
    /// Set at shutdown: the sequencer lease (PostgreSQL) is no longer renewed.
    lease_stop: Arc<AtomicBool>,
    /// Sequencer, replica, or the only writer (SQLite).
    pub sequencing: Arc<crate::store::Sequencing>,
    /// When a replica last read the database (for [`REPLICA_GRACE`]).
    followed_at: Mutex<Instant>,
    /// The client a replica passes writes to the sequencer with.
    pub forwarder: ureq::Agent,
    submit: Mutex<Option<SyncSender<Submission>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    snapshotter: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set (with the condvar) to stop the snapshot thread.
    stopping: (Mutex<bool>, Condvar),
    /// False once the writer stopped (shutdown or unrecoverable failure).
    pub ready: AtomicBool,
    /// Milliseconds since the epoch when the durable write in progress
    /// started; 0 when none is.
    writing_since_ms: AtomicU64,
    /// The last durable write's error, until one succeeds.
    failing: Mutex<Option<String>>,
    /// Metrics.
    pub counters: Counters,
    /// Tokens.
    pub tokens: crate::tokens::Tokens,
    /// Approvals waiting for cosigners (not part of the log).
    pub pending: crate::pending::Pool,
    /// The pinned trust root (entry 0).
    pub trust_root: Vec<u8>,
    /// Each node's latest verified heartbeat (not part of the log).
    pub heartbeats: Mutex<std::collections::HashMap<String, modelgate_governance::heartbeat::Heartbeat>>,
    /// Past-size refolds: one at a time, so a client asking for many cannot
    /// take the machine.
    pub refolds: tokio::sync::Semaphore,
    /// How long the last start-up took to rebuild the state, and from where.
    pub startup: Startup,
    /// The per-client bound on writes that need no token.
    pub unauthenticated: modelgate_http::rate::PerClient,
    /// The memory budget for bodies of writes with no token (nodes' lineage
    /// batches, heartbeats, node-signed entries): [`STRANGER_BODIES`].
    pub stranger_bodies: Arc<modelgate_http::Budget>,
    /// The memory budget for bodies of writes with a known token: [`CALLER_BODIES`].
    pub caller_bodies: Arc<modelgate_http::Budget>,
    /// The nodes' replicated lineage logs.
    pub lineage: crate::lineage::Lineage,
}

/// Writes that need no token (node-signed entries, heartbeats, lineage
/// batches) a client address may make per second, sustained, by default
/// (`authority serve --node-write-rate`): their signatures are checked only
/// once read, so without a bound one client could make the authority spend
/// its CPU and its writer's time on them. Nodes behind one address share it.
pub const NODE_WRITES_PER_SECOND: f64 = 10.0;
/// Such writes a client may make at once after being idle: this many
/// seconds of its rate.
pub const NODE_WRITE_BURST_SECONDS: f64 = 4.0;

/// Bodies of writes that carry no token, which anyone can send: at most
/// 64 MiB of them held at once, whatever the number of connections; one
/// client address at most one full lineage batch; each must arrive at
/// 1 MiB/s after a 5 s grace (a full batch in 21 s, well within the
/// request's 30 s).
pub const STRANGER_BODIES: modelgate_http::BodyLimits = modelgate_http::BodyLimits {
    budget_bytes: 64 << 20,
    per_client_bytes: crate::lineage::MAX_BATCH_BYTES,
    wait: std::time::Duration::from_secs(2),
    grace: std::time::Duration::from_secs(5),
    min_bytes_per_second: 1 << 20,
};

/// Bodies of writes with a known token (entries of at most 64 KiB): 64 MiB
/// at once, shared by every client.
pub const CALLER_BODIES: modelgate_http::BodyLimits = modelgate_http::BodyLimits {
    budget_bytes: 64 << 20,
    per_client_bytes: 64 << 20,
    wait: std::time::Duration::from_secs(5),
    grace: std::time::Duration::from_secs(5),
    min_bytes_per_second: 256 << 10,
};

/// How the state was rebuilt at start-up.
#[derive(Clone, Debug)]
pub struct Startup {
    /// The snapshot's size, if one was used.
    pub snapshot_size: Option<u64>,
    /// Why a snapshot present on disk was not used.
    pub snapshot_refused: Option<String>,
    /// Entries folded after the snapshot (or all of them).
    pub folded: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// POSIX seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The summary `/api/v1/state` serves: size, digest, counts, what is in force.
pub fn summary_json(s: &State) -> Bytes {
    let v = json!({
        "size": s.size,
        "digest": hex::encode(s.digest()),
        "trust_root_version": s.trust_root.as_ref().map(|r| r.doc.root_version),
        "models": s.models.len(),
        "approvals": s.approvals.len(),
        "revocations": s.revocations.len(),
        "exceptions": s.exceptions.len(),
        "nodes": s.nodes.len(),
        "policy": s.policy.as_ref().map(|p| json!({"id": p.id, "name": p.name, "index": p.index})),
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

impl Authority {
    /// Open the authority in `dir` as the log's only writer: take the store
    /// lock, rebuild the state (from the snapshot and the entries after it,
    /// or by folding the whole log; a log that does not fold is refused),
    /// and start the writer thread.
    pub fn open(dir: &Path) -> Result<Arc<Self>, AuthorityError> {
        Self::open_with(dir, StoreAt::Sqlite(DataDir::new(dir).store()))
    }

    /// [`Authority::open`] with the governance log in `store_at` (a SQLite
    /// file or a PostgreSQL database, where it takes the sequencer lease).
    pub fn open_with(dir: &Path, store_at: StoreAt) -> Result<Arc<Self>, AuthorityError> {
        let d = DataDir::new(dir);
        if !d.is_initialised() {
            return Err(AuthorityError::config(format!(
                "{} is not an initialised authority (run `modelgate authority init`)",
                dir.display()
            )));
        }
        let log_key = d.read_signer(&d.log_key())?;
        let cosigner = d.read_signer(&d.cosigner_key())?;
        let trust_root = std::fs::read(d.trust_root())
            .map_err(|e| AuthorityError::io(format!("couldn't read the trust root: {e}")))?;
        let lease_stop = Arc::new(AtomicBool::new(false));
        let store = store_at.open_log().map_err(AuthorityError::store)?;
        if store.size().map_err(AuthorityError::store)? == 0 {
            return Err(AuthorityError::config(format!(
                "the log store {} holds no log: this data directory was initialised with another store \
                 (give the same --store as to `authority init`)",
                store_at.describe()
            )));
        }
        let log = Log::open(store, log_key.clone()).map_err(AuthorityError::store)?;
        let (state, startup) = rebuild_state(&d, &trust_root, &log, &log_key)?;
        let sequencing = crate::store::start_lease(&store_at, &crate::store::holder_name(), Arc::clone(&lease_stop))
            .map_err(AuthorityError::store)?;
        if state.size != log.size() {
            return Err(AuthorityError::fold(format!(
                "the state holds {} entries, the log {}",
                state.size,
                log.size()
            )));
        }
        // At the size folded: a shared database may have grown since.
        let cp_size = log.size();
        let note = log
            .store()
            .checkpoint(cp_size)
            .map_err(AuthorityError::store)?
            .ok_or_else(|| AuthorityError::fold(format!("the store has no checkpoint for its {cp_size} entries")))?;
        let own_policy =
            CheckpointPolicy::new(log_key.verifier(), vec![], 0).map_err(|e| AuthorityError::config(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_MAX);
        let note = Arc::new(note);
        let summary = summary_json(&state);
        let working = state.working_copy();
        let authority = Arc::new(Self {
            dir: d.clone(),
            published: RwLock::new(Arc::new(state)),
            summaries: Mutex::new(VecDeque::from([(cp_size, summary)])),
            latest: Mutex::new((cp_size, Arc::clone(&note))),
            latest_changed: Condvar::new(),
            latest_at: Mutex::new(None),
            witnessed: Mutex::new(None),
            witnesses: Mutex::new(None),
            served: RwLock::new(Served {
                note,
                size: cp_size,
                time: 0,
            }),
            cosigner,
            log_key,
            own_policy,
            readers: Mutex::new(Vec::new()),
            store_at,
            lease_stop,
            sequencing,
            followed_at: Mutex::new(Instant::now()),
            forwarder: modelgate_http::agent(modelgate_http::Timeouts::SEQUENCER),
            submit: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            snapshotter: Mutex::new(None),
            stopping: (Mutex::new(false), Condvar::new()),
            ready: AtomicBool::new(true),
            writing_since_ms: AtomicU64::new(0),
            failing: Mutex::new(None),
            counters: Counters::default(),
            tokens: crate::tokens::Tokens::new(&d.tokens()),
            pending: crate::pending::Pool::open(&d.pending())?,
            trust_root,
            heartbeats: Mutex::new(Default::default()),
            refolds: tokio::sync::Semaphore::new(1),
            startup,
            unauthenticated: modelgate_http::rate::PerClient::new(NODE_WRITES_PER_SECOND, NODE_WRITE_BURST_SECONDS),
            stranger_bodies: modelgate_http::Budget::new(STRANGER_BODIES),
            caller_bodies: modelgate_http::Budget::new(CALLER_BODIES),
            lineage: crate::lineage::Lineage::open(&d.lineage())
                .map_err(|e| AuthorityError::io(format!("the replicated lineage: {e}")))?,
        });
        let state = authority.state();
        authority
            .lineage
            .reconcile(|n| state.nodes.get(n).map(|r| r.key.clone()))
            .map_err(|e| AuthorityError::io(format!("re-indexing the replicated lineage: {e}")))?;
        drop(state);
        authority.refresh_checkpoint()?;
        authority.start_threads(log, working, rx)?;
        Ok(authority)
    }

    /// Start the writer and the snapshot threads.
    fn start_threads(
        self: &Arc<Self>,
        log: Log<Store>,
        working: State,
        rx: Receiver<Submission>,
    ) -> Result<(), AuthorityError> {
        let a = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("modelgate-governance-writer".into())
            .spawn(move || writer(a, log, working, rx))
            .map_err(|e| AuthorityError::io(format!("starting the writer thread: {e}")))?;
        if let Ok(mut w) = self.writer.lock() {
            *w = Some(handle);
        }
        let a = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("modelgate-snapshot".into())
            .spawn(move || snapshotter(a))
            .map_err(|e| AuthorityError::io(format!("starting the snapshot thread: {e}")))?;
        if let Ok(mut w) = self.snapshotter.lock() {
            *w = Some(handle);
        }
        Ok(())
    }

    /// The state of every durable entry (a snapshot: it does not change
    /// under the caller).
    pub fn state(&self) -> Arc<State> {
        match self.published.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The published state's size and summary. Read from the summaries, not
    /// the state: a reference to the state held while the writer publishes
    /// makes it copy the state.
    pub fn latest(&self) -> (u64, Bytes) {
        let back = self.summaries.lock().ok().and_then(|g| g.back().cloned());
        back.unwrap_or_else(|| {
            let s = self.state();
            (s.size, summary_json(&s))
        })
    }

    /// The size of the published state (see [`Authority::latest`]).
    pub fn size(&self) -> u64 {
        self.latest().0
    }

    /// The summary at `size`, when it is one of the recent checkpoint sizes.
    pub fn summary_at(&self, size: u64) -> Option<Bytes> {
        let g = self.summaries.lock().ok()?;
        let i = g.binary_search_by_key(&size, |(n, _)| *n).ok()?;
        Some(g[i].1.clone())
    }

    /// Whether the writer can take writes now.
    pub fn writer_trouble(&self) -> Option<WriterTrouble> {
        if !self.ready.load(Ordering::SeqCst) {
            return Some(WriterTrouble::Stopped);
        }
        let since = self.writing_since_ms.load(Ordering::SeqCst);
        if since != 0 {
            let busy = Duration::from_millis(now_ms().saturating_sub(since));
            if busy >= STALL_AFTER {
                return Some(WriterTrouble::Stalled(busy));
            }
        }
        self.failing
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .map(WriterTrouble::Failing)
    }

    /// Queue a submission; the receiver gets the outcome once it is durable
    /// or refused. `Err` says why it was not queued.
    pub fn submit(&self, bytes: Vec<u8>) -> Result<tokio::sync::oneshot::Receiver<Outcome>, NotQueued> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let guard = self.submit.lock().map_err(|_| NotQueued::ShuttingDown)?;
        let tx = guard.as_ref().ok_or(NotQueued::ShuttingDown)?;
        match tx.try_send(Submission { bytes, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                Err(NotQueued::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(NotQueued::WriterStopped),
        }
    }

    /// Start asking these witnesses (c2sp.org/tlog-witness) to cosign every
    /// checkpoint; from then on the checkpoint served is the last one that
    /// met the trust root's witness quorum. A trust root that asks for a
    /// quorum the URLs cannot meet is refused here, before anything is served.
    pub fn start_witnesses(self: &Arc<Self>, urls: &[String]) -> Result<(), AuthorityError> {
        let quorum = self.state().trust_root().map_or(0, |r| r.doc.witness_quorum as usize);
        if urls.len() < quorum {
            return Err(AuthorityError::config(format!(
                "the trust root asks for {quorum} witness cosignature(s) on every checkpoint, and {} witness URL(s) were given \
                 (--witness-url): nodes would trust no checkpoint of this authority",
                urls.len()
            )));
        }
        if urls.is_empty() {
            return Ok(());
        }
        let w = Arc::new(crate::witness::Witnesses::new(urls));
        if let Ok(mut slot) = self.witnesses.lock() {
            *slot = Some(Arc::clone(&w));
        }
        // A first round before anything is served: a restarted authority
        // serves a witnessed checkpoint from its first answer on.
        let (size, note, _) = self.wait_for_checkpoint(None, Duration::ZERO);
        let done = crate::witness::round(self, &w, &note, None).then_some(size);
        let a = Arc::clone(self);
        std::thread::Builder::new()
            .name("modelgate-witnesses".into())
            .spawn(move || crate::witness::run(a, w, done))
            .map_err(|e| AuthorityError::io(format!("starting the witness thread: {e}")))?;
        Ok(())
    }

    /// Wait (up to `timeout`) for a checkpoint of another size than `seen`;
    /// the latest signed one, and when it was appended.
    pub(crate) fn wait_for_checkpoint(
        &self,
        seen: Option<u64>,
        timeout: Duration,
    ) -> (u64, Arc<Vec<u8>>, crate::witness::AppendedAt) {
        let at = || self.latest_at.lock().ok().and_then(|t| *t);
        let Ok(g) = self.latest.lock() else {
            return (0, Arc::new(Vec::new()), None);
        };
        let g = match self
            .latest_changed
            .wait_timeout_while(g, timeout, |l| Some(l.0) == seen)
        {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        let out = (g.0, Arc::clone(&g.1));
        drop(g);
        (out.0, out.1, at())
    }

    /// Record a checkpoint that met the witness quorum (with its cosignatures).
    pub(crate) fn set_witnessed(&self, size: u64, note: Vec<u8>) {
        if let Ok(mut w) = self.witnessed.lock() {
            if w.as_ref().is_none_or(|(s, _)| *s <= size) {
                *w = Some((size, Arc::new(note)));
            }
        }
    }

    /// Re-cosign the served checkpoint with the current time: the latest one
    /// when the trust root asks for no witness, else the last one that met
    /// its quorum. The note is verified with the log's own key before it is
    /// published.
    pub fn refresh_checkpoint(&self) -> Result<(), AuthorityError> {
        if matches!(self.sequencing.role(), crate::store::Role::Replica(_)) {
            let behind = self.followed_at.lock().map(|t| t.elapsed()).unwrap_or(Duration::MAX);
            if behind > REPLICA_GRACE {
                tracing::warn!(
                    seconds = behind.as_secs(),
                    "this replica cannot read the database: no fresh timestamp on its checkpoint"
                );
                return Ok(());
            }
        }
        let quorum = self.state().trust_root().map_or(0, |r| r.doc.witness_quorum);
        let witnessed = if quorum > 0 {
            self.witnessed.lock().ok().and_then(|w| w.clone())
        } else {
            None
        };
        if let Some((size, _)) = &witnessed {
            // Entries the witnesses have not cosigned for this long mean the
            // nodes cannot see governance as it is (a revocation may be
            // waiting): stop vouching for the old checkpoint's freshness, so
            // they contain with SyncInterrupted at their staleness bound
            // instead of serving on an old view for as long as witnesses are away.
            let latest = self.latest.lock().map(|g| g.0).unwrap_or(0);
            let waiting = self.latest_at.lock().ok().and_then(|t| *t).map(|t| t.elapsed());
            if latest > *size && waiting.is_some_and(|w| w > crate::witness::UNWITNESSED_GRACE) {
                tracing::warn!(
                    served = size,
                    latest,
                    "entries wait for the witness quorum: no fresh timestamp on the last witnessed checkpoint"
                );
                return Ok(());
            }
        }
        let (size, note) = match witnessed {
            Some(w) => w,
            None => self
                .latest
                .lock()
                .map(|g| (g.0, Arc::clone(&g.1)))
                .map_err(|_| AuthorityError::io("checkpoint lock poisoned"))?,
        };
        let mut parsed = Note::parse(&note).map_err(|e| AuthorityError::fold(format!("stored checkpoint: {e}")))?;
        let time = now();
        let sig = self
            .cosigner
            .cosign(parsed.text(), time)
            .map_err(|e| AuthorityError::config(e.to_string()))?;
        parsed
            .add_signature(sig)
            .map_err(|e| AuthorityError::config(e.to_string()))?;
        let bytes = parsed.to_bytes();
        self.own_policy
            .verify(&bytes)
            .map_err(|e| AuthorityError::fold(format!("refusing to publish a checkpoint that does not verify: {e}")))?;
        if let Ok(mut s) = self.served.write() {
            *s = Served {
                note: Arc::new(bytes),
                size,
                time,
            };
        }
        Ok(())
    }

    /// Run `f` with a read-only store handle that sees at least the served
    /// checkpoint's size (a pooled handle keeps the size it last read, and
    /// would answer "not found" for what was appended since).
    pub fn with_reader<T>(&self, f: impl FnOnce(&mut dyn LogStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let mut store = match pooled {
            Some(s) => s,
            None => self.store_at.open_reader()?,
        };
        let served = self.served.read().map_or(0, |s| s.size);
        if store.size()? < served {
            store.refresh()?;
        }
        let out = f(&mut *store);
        if let Ok(mut p) = self.readers.lock() {
            if p.len() < READERS_MAX {
                p.push(store);
            }
        }
        out
    }

    /// Entries `from..to` (each a DSSE envelope as submitted), read from a
    /// pooled handle; `to` at most the served size.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, AuthorityError> {
        self.with_reader(|s| s.entries(from, to)).map_err(AuthorityError::store)
    }

    /// The C2SP tlog-proof of entry `index` against the served checkpoint
    /// (its text form); `None` when the served log has no such entry.
    pub fn tlog_proof(&self, index: u64) -> Result<Option<Vec<u8>>, AuthorityError> {
        let (note, size) = match self.served.read() {
            Ok(s) => (Arc::clone(&s.note), s.size),
            Err(p) => {
                let s = p.into_inner();
                (Arc::clone(&s.note), s.size)
            }
        };
        if index >= size {
            return Ok(None);
        }
        let hashes = self
            .with_reader(|s| {
                modelgate_tlog::inclusion_proof(index, size, &modelgate_store::Nodes(&*s))
                    .map_err(|e| StoreError::NotFound(e.to_string()))
            })
            .map_err(AuthorityError::store)?;
        let proof = modelgate_tlog::TlogProof {
            extra: None,
            index,
            hashes,
            checkpoint: note.as_ref().clone(),
        };
        Ok(Some(proof.to_bytes()))
    }

    /// Stop taking submissions, finish the queued ones, write a last
    /// snapshot of the state, close the store.
    pub fn shutdown(&self) {
        // No renewal races the writer's hand-over of the lease as it closes.
        self.lease_stop.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.submit.lock() {
            *tx = None;
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.ready.store(false, Ordering::SeqCst);
        if let Ok(mut stop) = self.stopping.0.lock() {
            *stop = true;
            self.stopping.1.notify_all();
        }
        let handle = self.snapshotter.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.snapshot_now();
    }

    /// Write a snapshot of the published state (errors are logged: a
    /// missing snapshot only costs a longer start).
    pub fn snapshot_now(&self) -> Option<u64> {
        let state = self.state();
        let r = self
            .with_reader(|store| {
                Ok(crate::snapshot::write(
                    &self.dir.snapshot(),
                    &state,
                    store,
                    &self.log_key,
                ))
            })
            .unwrap_or_else(|e| Err(AuthorityError::store(e)));
        match r {
            Ok(()) => Some(state.size),
            Err(e) => {
                tracing::warn!(error = %e, "writing the state snapshot");
                None
            }
        }
    }

    /// Apply a durable batch to the published state and publish its
    /// summary. The write lock is held only while the batch's effects are
    /// applied: no I/O, no hashing of the whole state.
    fn publish(&self, checked: Vec<modelgate_governance::Checked>, working: &State) {
        let ok = match self.published.write() {
            Ok(mut g) => {
                let st = Arc::make_mut(&mut g);
                checked.into_iter().try_for_each(|c| st.commit_checked(c)).is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            // Cannot happen while this thread is the only writer; if it did,
            // the working copy is the durable state.
            tracing::error!("publishing a batch failed; publishing the working state instead");
            if let Ok(mut g) = self.published.write() {
                *g = Arc::new(working.clone());
            }
        }
        let state = self.state();
        let summary = summary_json(&state);
        if let Ok(mut g) = self.summaries.lock() {
            g.push_back((state.size, summary));
            while g.len() > SUMMARIES_KEPT {
                g.pop_front();
            }
        }
    }
}

/// The state at start-up: the signed snapshot if it checks (signature by
/// the log key, root at its size, length, hash, restored digest), then the
/// entries after it folded; or the whole log folded.
fn rebuild_state(
    d: &DataDir,
    trust_root: &[u8],
    log: &Log<Store>,
    log_key: &SignerKey,
) -> Result<(State, Startup), AuthorityError> {
    let started = Instant::now();
    let (state, snapshot_size, snapshot_refused) =
        match crate::snapshot::read(&d.snapshot(), trust_root, &**log.store(), log_key) {
            Ok(Some(s)) => {
                let n = s.size;
                (s, Some(n), None)
            }
            Ok(None) => (fresh(trust_root)?, None, None),
            Err(e) => {
                tracing::warn!(error = %e, "not using the state snapshot; folding the whole log");
                (fresh(trust_root)?, None, Some(e.to_string()))
            }
        };
    let from = state.size;
    let state = refold_onto(state, &**log.store()).map_err(AuthorityError::fold)?;
    let startup = Startup {
        snapshot_size,
        snapshot_refused,
        folded: state.size - from,
        elapsed: started.elapsed(),
    };
    tracing::info!(?startup, "governance state rebuilt");
    Ok((state, startup))
}

fn fresh(trust_root: &[u8]) -> Result<State, AuthorityError> {
    State::new(trust_root).map_err(|e| AuthorityError::fold(e.to_string()))
}

/// Fold the store's entries after `state.size` onto `state`.
fn refold_onto(mut state: State, store: &dyn LogStore) -> Result<State, String> {
    let size = store.size().map_err(|e| e.to_string())?;
    let mut start = state.size;
    while start < size {
        let end = (start + 4096).min(size);
        for e in store.entries(start, end).map_err(|e| e.to_string())? {
            state.apply(&e).map_err(|e| e.to_string())?;
        }
        start = end;
    }
    Ok(state)
}

fn snapshotter(a: Arc<Authority>) {
    let mut last = a.state().size;
    loop {
        let Ok(stop) = a.stopping.0.lock() else { return };
        let Ok((stop, _)) = a.stopping.1.wait_timeout_while(stop, SNAPSHOT_INTERVAL, |s| !*s) else {
            return;
        };
        if *stop {
            return;
        }
        drop(stop);
        if a.state().size > last {
            if let Some(n) = a.snapshot_now() {
                last = n;
            }
        }
    }
}
