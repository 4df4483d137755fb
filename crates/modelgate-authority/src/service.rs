//! The authority's core, without HTTP: the writer thread that checks each
//! submission with the fold's rules and appends it with group commit, the
//! state the read API serves, and the freshly cosigned checkpoint.
//!
//! One thread owns the log and the state. It takes a batch of submissions,
//! and, holding the state's write lock, applies them one by one with the
//! fold's rules (so two submissions in one batch see each other), appends the
//! accepted ones in one durable step, and only then releases the lock and
//! acknowledges. If the append fails, the state is refolded from the store
//! before the lock is released. Nothing is ever in flight outside this
//! thread, so the log can never hold an entry the fold would refuse, and
//! readers never see an entry that is not durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use modelgate_governance::{FoldError, State};
use modelgate_store::{Log, LogStore, SqliteStore, StoreError};
use modelgate_tlog::{CheckpointPolicy, Note, SignerKey};

use crate::data::DataDir;
use crate::error::AuthorityError;

/// Most submissions checked and appended together.
pub const BATCH_MAX: usize = 1024;
/// Submissions that may wait before new ones get "busy".
pub const QUEUE_MAX: usize = 8192;
/// Read-only store handles kept open for reads (each holds a page cache).
const READERS_MAX: usize = 16;

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
    /// The store failed; nothing was appended.
    Failed(String),
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
}

/// Everything the HTTP layer reads.
pub struct Authority {
    /// The data directory.
    pub dir: DataDir,
    /// The state of all durable entries.
    pub committed: RwLock<State>,
    /// The latest signed checkpoint note (without our cosignature).
    latest: Mutex<(u64, Arc<Vec<u8>>)>,
    /// What /log/checkpoint serves.
    pub served: RwLock<Served>,
    cosigner: SignerKey,
    own_policy: CheckpointPolicy,
    /// Read-only store handles for tiles and entries.
    readers: Mutex<Vec<SqliteStore>>,
    store_path: PathBuf,
    submit: Mutex<Option<SyncSender<Submission>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// False once the writer stopped (shutdown or unrecoverable failure).
    pub ready: AtomicBool,
    /// Metrics.
    pub counters: Counters,
    /// Tokens.
    pub tokens: crate::tokens::Tokens,
    /// The pinned trust root (entry 0).
    pub trust_root: Vec<u8>,
    /// Each node's latest verified heartbeat (not part of the log).
    pub heartbeats: Mutex<std::collections::HashMap<String, modelgate_governance::heartbeat::Heartbeat>>,
}

/// POSIX seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Authority {
    /// Open the authority in `dir` as the log's only writer: take the store
    /// lock, refold the whole log (a log that does not fold is refused), and
    /// start the writer thread.
    pub fn open(dir: &Path) -> Result<Arc<Self>, AuthorityError> {
        let d = DataDir::new(dir);
        if !d.is_initialised() {
            return Err(AuthorityError::Config(format!(
                "{} is not an initialised authority (run `modelgate authority init`)",
                dir.display()
            )));
        }
        let log_key = d.read_signer(&d.log_key())?;
        let cosigner = d.read_signer(&d.cosigner_key())?;
        let trust_root = std::fs::read(d.trust_root())
            .map_err(|e| AuthorityError::Io(format!("couldn't read the trust root: {e}")))?;
        let store = SqliteStore::open(&d.store()).map_err(AuthorityError::Store)?;
        let log = Log::open(store, log_key.clone()).map_err(AuthorityError::Store)?;
        let size = log.size();
        let state = refold(&trust_root, log.store()).map_err(AuthorityError::Fold)?;
        debug_assert_eq!(state.size, size);
        let (cp_size, note) = log
            .store()
            .latest_checkpoint()
            .map_err(AuthorityError::Store)?
            .ok_or_else(|| AuthorityError::Fold("the store has no checkpoint".into()))?;
        let own_policy =
            CheckpointPolicy::new(log_key.verifier(), vec![], 0).map_err(|e| AuthorityError::Config(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_MAX);
        let note = Arc::new(note);
        let authority = Arc::new(Self {
            dir: d.clone(),
            committed: RwLock::new(state),
            latest: Mutex::new((cp_size, Arc::clone(&note))),
            served: RwLock::new(Served {
                note,
                size: cp_size,
                time: 0,
            }),
            cosigner,
            own_policy,
            readers: Mutex::new(Vec::new()),
            store_path: d.store(),
            submit: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            ready: AtomicBool::new(true),
            counters: Counters::default(),
            tokens: crate::tokens::Tokens::new(&d.tokens()),
            trust_root,
            heartbeats: Mutex::new(Default::default()),
        });
        authority.refresh_checkpoint()?;
        let a = Arc::clone(&authority);
        let handle = std::thread::Builder::new()
            .name("modelgate-governance-writer".into())
            .spawn(move || writer(a, log, rx))
            .map_err(|e| AuthorityError::Io(format!("starting the writer thread: {e}")))?;
        if let Ok(mut w) = authority.writer.lock() {
            *w = Some(handle);
        }
        Ok(authority)
    }

    /// Queue a submission; the receiver gets the outcome once it is durable
    /// or refused. `Err` means it was not queued (busy or shut down).
    pub fn submit(&self, bytes: Vec<u8>) -> Result<tokio::sync::oneshot::Receiver<Outcome>, &'static str> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let guard = self.submit.lock().map_err(|_| "the authority is shutting down")?;
        let tx = guard.as_ref().ok_or("the authority is shutting down")?;
        match tx.try_send(Submission { bytes, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                Err("busy")
            }
            Err(TrySendError::Disconnected(_)) => Err("the authority's writer has stopped"),
        }
    }

    /// Re-cosign the latest checkpoint with the current time. The note is
    /// verified with the log's own key before it is published.
    pub fn refresh_checkpoint(&self) -> Result<(), AuthorityError> {
        let (size, note) = self
            .latest
            .lock()
            .map(|g| (g.0, Arc::clone(&g.1)))
            .map_err(|_| AuthorityError::Io("checkpoint lock poisoned".into()))?;
        let mut parsed = Note::parse(&note).map_err(|e| AuthorityError::Fold(format!("stored checkpoint: {e}")))?;
        let time = now();
        let sig = self
            .cosigner
            .cosign(parsed.text(), time)
            .map_err(|e| AuthorityError::Config(e.to_string()))?;
        parsed
            .add_signature(sig)
            .map_err(|e| AuthorityError::Config(e.to_string()))?;
        let bytes = parsed.to_bytes();
        self.own_policy
            .verify(&bytes)
            .map_err(|e| AuthorityError::Fold(format!("refusing to publish a checkpoint that does not verify: {e}")))?;
        if let Ok(mut s) = self.served.write() {
            *s = Served {
                note: Arc::new(bytes),
                size,
                time,
            };
        }
        Ok(())
    }

    /// Run `f` with a read-only store handle.
    pub fn with_reader<T>(&self, f: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let mut store = match pooled {
            Some(s) => s,
            None => SqliteStore::open_read_only(&self.store_path)?,
        };
        let out = f(&mut store);
        if let Ok(mut p) = self.readers.lock() {
            if p.len() < READERS_MAX {
                p.push(store);
            }
        }
        out
    }

    /// Stop taking submissions, finish the queued ones, close the store.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.submit.lock() {
            *tx = None;
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.ready.store(false, Ordering::SeqCst);
    }
}

fn refold(trust_root: &[u8], store: &SqliteStore) -> Result<State, String> {
    let size = store.size().map_err(|e| e.to_string())?;
    let mut state = State::new(trust_root).map_err(|e| e.to_string())?;
    let mut start = 0;
    while start < size {
        let end = (start + 4096).min(size);
        for e in store.entries(start, end).map_err(|e| e.to_string())? {
            state.apply(&e).map_err(|e| e.to_string())?;
        }
        start = end;
    }
    Ok(state)
}

fn writer(a: Arc<Authority>, mut log: Log<SqliteStore>, rx: Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        // One state, held for the whole batch: each submission is checked
        // against every earlier one, readers never see an entry that is not
        // durable yet, and there is no second copy of the state in memory.
        let Ok(mut state) = a.committed.write() else { break };
        let mut accepted = Vec::with_capacity(batch.len());
        for s in batch {
            match state.apply(&s.bytes) {
                Ok(()) => accepted.push(s),
                Err(e) => {
                    a.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = s.reply.send(Outcome::Refused(e));
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }
        // The replies no longer need the bytes: move them, don't copy them.
        let entries: Vec<Vec<u8>> = accepted.iter_mut().map(|s| std::mem::take(&mut s.bytes)).collect();
        match log.append(&entries) {
            Ok(done) => {
                drop(state);
                a.counters.appended.fetch_add(entries.len() as u64, Ordering::Relaxed);
                a.counters.batches.fetch_add(1, Ordering::Relaxed);
                let note = Arc::new(done.checkpoint);
                if let Ok(mut l) = a.latest.lock() {
                    *l = (done.size, Arc::clone(&note));
                }
                if let Err(e) = a.refresh_checkpoint() {
                    tracing::error!(error = %e, "publishing the new checkpoint");
                }
                for (i, s) in accepted.into_iter().enumerate() {
                    let _ = s.reply.send(Outcome::Accepted {
                        index: done.first + i as u64,
                        checkpoint: Arc::clone(&note),
                    });
                }
            }
            Err(e) => {
                a.counters.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "appending a batch failed; rebuilding the state from the store");
                for s in accepted {
                    let _ = s.reply.send(Outcome::Failed(e.to_string()));
                }
                // The state took entries that are not durable: rebuild it from
                // what the store holds, before anyone can read it.
                let rebuilt = if matches!(log.store().size(), Ok(n) if n == log.size()) {
                    refold(&a.trust_root, log.store())
                } else {
                    Err("the store and the log disagree after a failure".into())
                };
                match rebuilt {
                    Ok(s) => *state = s,
                    Err(m) => {
                        tracing::error!(error = %m, "stopping the writer");
                        break;
                    }
                }
            }
        }
    }
    a.ready.store(false, Ordering::SeqCst);
    if let Err(e) = log.close() {
        tracing::error!(error = %e, "closing the store");
    }
}
