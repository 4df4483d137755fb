//! Group commit: many concurrent submitters, one writer thread. Queued
//! entries are taken in batches (bounded by count and by a wait time), each
//! batch is one transaction and one fsync, and every submitter hears back
//! only after its entry is durable under a signed checkpoint.
//!
//! The queue is bounded: when it is full a submitter gets
//! [`SubmitError::Busy`] at once instead of growing memory without limit.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::log::Log;
use crate::store::LogStore;

/// Batching and queueing limits.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most entries in one batch (one transaction, one fsync).
    pub max_batch: usize,
    /// How long a batch may wait for more entries after its first one.
    /// Zero takes whatever is queued: under load the queue fills while the
    /// previous batch is being fsynced, which is where batching comes from.
    pub max_wait: Duration,
    /// Entries that may wait in the queue before submitters are told "busy".
    pub queue_capacity: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            max_wait: Duration::ZERO,
            queue_capacity: 65_536,
        }
    }
}

/// What a submitter gets once its entry is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's index in the log.
    pub index: u64,
    /// The log size of the checkpoint (covers `index`).
    pub size: u64,
    /// The signed checkpoint note for `size`.
    pub checkpoint: Arc<[u8]>,
}

/// Why a submission was not appended. In every case the entry is not in the log.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full; retry later.
    #[error("the log is busy: {0} entries are already queued; retry later")]
    Busy(usize),
    /// The entry itself is unacceptable (too large).
    #[error("entry refused: {0}")]
    Invalid(StoreError),
    /// Writing the batch failed; the entry was not appended.
    #[error("append failed: {0}")]
    Failed(StoreError),
    /// The sequencer has stopped (shut down, or stopped after a storage
    /// failure it could not recover from).
    #[error("the log sequencer has stopped: {0}")]
    Stopped(String),
}

type Reply = Box<dyn FnOnce(Result<Receipt, SubmitError>) + Send>;

struct Job {
    entry: Vec<u8>,
    reply: Reply,
}

/// The writer thread and the queue in front of it.
pub struct Sequencer<S: LogStore + 'static> {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<Log<S>>>,
    stopped: Arc<Mutex<Option<String>>>,
    capacity: usize,
}

impl<S: LogStore + 'static> Sequencer<S> {
    /// Start the writer thread for `log`.
    pub fn start(log: Log<S>, config: SequencerConfig) -> Result<Self, StoreError> {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let stopped = Arc::new(Mutex::new(None));
        let flag = Arc::clone(&stopped);
        let thread = std::thread::Builder::new()
            .name("modelgate-sequencer".into())
            .spawn(move || run(log, rx, config, flag))
            .map_err(|e| StoreError::Io(format!("starting the sequencer thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            stopped,
            capacity,
        })
    }

    fn stopped_reason(&self) -> Option<String> {
        match self.stopped.lock() {
            Ok(g) => g.clone(),
            Err(_) => Some("the sequencer's state lock was poisoned".into()),
        }
    }

    /// Queue `entry`; `reply` is called (on the writer thread) once it is
    /// durable, or with the reason it was not appended. Returns an error, and
    /// never calls `reply`, if the entry could not even be queued.
    pub fn submit_with(
        &self,
        entry: Vec<u8>,
        reply: impl FnOnce(Result<Receipt, SubmitError>) + Send + 'static,
    ) -> Result<(), SubmitError> {
        if let Some(reason) = self.stopped_reason() {
            return Err(SubmitError::Stopped(reason));
        }
        Log::<S>::validate(std::slice::from_ref(&entry)).map_err(SubmitError::Invalid)?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| SubmitError::Stopped("shut down".into()))?;
        match tx.try_send(Job {
            entry,
            reply: Box::new(reply),
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped(
                self.stopped_reason()
                    .unwrap_or_else(|| "the writer thread exited".into()),
            )),
        }
    }

    /// Queue `entry` and wait until it is durable.
    pub fn submit(&self, entry: Vec<u8>) -> Result<Receipt, SubmitError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit_with(entry, move |r| {
            let _ = tx.send(r);
        })?;
        // A dropped reply means the writer thread died mid-batch: the entry
        // may or may not be on disk, and the caller must not assume either.
        rx.recv()
            .unwrap_or_else(|_| Err(SubmitError::Stopped("the writer thread exited mid-batch".into())))
    }

    /// Stop accepting entries, finish every queued one, and return the log.
    pub fn shutdown(mut self) -> Result<Log<S>, StoreError> {
        self.tx = None;
        let thread = self.thread.take().ok_or(StoreError::Closed)?;
        thread
            .join()
            .map_err(|_| StoreError::Io("the sequencer thread panicked".into()))
    }
}

impl<S: LogStore + 'static> Drop for Sequencer<S> {
    fn drop(&mut self) {
        // Close the queue and let the writer finish what was acknowledged as queued.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<S: LogStore>(
    mut log: Log<S>,
    rx: Receiver<Job>,
    config: SequencerConfig,
    stopped: Arc<Mutex<Option<String>>>,
) -> Log<S> {
    let max_batch = config.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(j) => jobs.push(j),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        let mut entries = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for j in jobs {
            entries.push(j.entry);
            replies.push(j.reply);
        }
        match log.append(&entries) {
            Ok(done) => {
                let checkpoint: Arc<[u8]> = Arc::from(done.checkpoint);
                for (i, reply) in replies.into_iter().enumerate() {
                    reply(Ok(Receipt {
                        index: done.first + i as u64,
                        size: done.size,
                        checkpoint: Arc::clone(&checkpoint),
                    }));
                }
            }
            Err(e) => {
                for reply in replies {
                    reply(Err(SubmitError::Failed(e.clone())));
                }
                // The transaction rolled back and the in-memory tree did not
                // move. If the store disagrees, nothing more can be trusted:
                // stop, and refuse everything still queued.
                let in_sync = matches!(log.store().size(), Ok(n) if n == log.size());
                if !in_sync {
                    let reason = format!("storage failed and the log is out of sync: {e}");
                    if let Ok(mut g) = stopped.lock() {
                        *g = Some(reason.clone());
                    }
                    for j in rx.try_iter() {
                        (j.reply)(Err(SubmitError::Stopped(reason.clone())));
                    }
                    return log;
                }
            }
        }
    }
    log
}
