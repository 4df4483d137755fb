//! The node's lineage log, as a seam.
//!
//! Contract for a [`LineageLog`]:
//!
//! - an append is acknowledged (`Ok`, or the callback's `Ok`) only once the
//!   record is durable at the index it names, under a checkpoint the node
//!   signed; a failed append is an error, never a silent drop;
//! - records are append-only: what was read at an index is what is there
//!   later, and every checkpoint it returns is consistent with the earlier
//!   ones (the node re-checks this against its anchors and contains when
//!   it is not so);
//! - reads reflect every acknowledged append.
//!
//! [`StoreLineage`] keeps it in SQLite with group commit (one fsync per batch).

use std::path::Path;
use std::sync::Mutex;

use modelgate_store::{Auditor, LogStore as _, Nodes, Sequencer, SequencerConfig, SqliteStore};
use modelgate_tlog::{Hash, SignerKey};

/// Where an acknowledged record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The record's index.
    pub index: u64,
    /// The size of the checkpoint that covers it.
    pub size: u64,
}

/// Why the lineage log could not do what was asked.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineageError {
    /// It could not be opened (the node contains every model until it can).
    #[error("the lineage log is not open: {0}")]
    NotOpen(String),
    /// An append was refused or failed before it was durable.
    #[error("the lineage record could not be made durable: {0}")]
    Write(String),
    /// A read failed.
    #[error("reading the lineage log: {0}")]
    Read(String),
    /// Its checkpoints do not audit clean.
    #[error("the lineage log does not audit: {0}")]
    Audit(String),
}

/// What runs once an append is durable (or has failed).
pub type Then = Box<dyn FnOnce(Result<Receipt, LineageError>) + Send + 'static>;

/// The node's append-only log of lifecycle, request, completion and denial records.
pub trait LineageLog: Send + Sync {
    /// Append and wait until durable.
    fn append(&self, record: Vec<u8>) -> Result<Receipt, LineageError>;
    /// Append without waiting; `then` runs once the record is durable or has
    /// failed. An error here means it was not even queued (`then` never runs).
    fn append_then(&self, record: Vec<u8>, then: Then) -> Result<(), LineageError>;
    /// Records held.
    fn size(&self) -> Result<u64, LineageError>;
    /// Records `[start, end)`.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, LineageError>;
    /// The latest signed checkpoint: its size and note.
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, LineageError>;
    /// The signed checkpoint note for `size`, if one was made.
    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, LineageError>;
    /// RFC 6962 inclusion proof of `index` in the tree of `size`.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LineageError>;
    /// RFC 6962 consistency proof from `from` to `to`.
    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LineageError>;
    /// The root of the tree of the first `size` records.
    fn root(&self, size: u64) -> Result<Hash, LineageError>;
    /// Audit up to the latest checkpoint; the audited size.
    fn audit(&self) -> Result<u64, LineageError>;
}

/// Append; the future resolves once the record is durable.
pub fn append_async(
    log: &dyn LineageLog,
    record: Vec<u8>,
) -> impl std::future::Future<Output = Result<Receipt, LineageError>> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let queued = log.append_then(
        record,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    async move {
        queued?;
        rx.await
            .unwrap_or_else(|_| Err(LineageError::Write("the lineage writer exited mid-batch".into())))
    }
}

/// The lineage log in SQLite: a group-commit writer, and a read-only
/// connection for reads, proofs and audits.
pub struct StoreLineage {
    seq: Sequencer<SqliteStore>,
    reader: Mutex<SqliteStore>,
    auditor: Mutex<Auditor>,
}

fn read_err(e: impl std::fmt::Display) -> LineageError {
    LineageError::Read(e.to_string())
}

impl StoreLineage {
    /// Open (or create) the log at `path`, its checkpoints signed with `key`.
    pub fn open(path: &Path, key: &SignerKey) -> Result<Self, LineageError> {
        let not_open = |e: &dyn std::fmt::Display| LineageError::NotOpen(e.to_string());
        let store = SqliteStore::open(path).map_err(|e| not_open(&e))?;
        let log = modelgate_store::Log::open(store, key.clone()).map_err(|e| not_open(&e))?;
        let seq = Sequencer::start(log, SequencerConfig::default()).map_err(|e| not_open(&e))?;
        let reader = SqliteStore::open_read_only(path).map_err(|e| not_open(&e))?;
        let policy = modelgate_tlog::CheckpointPolicy::new(key.verifier(), vec![], 0).map_err(|e| not_open(&e))?;
        Ok(Self {
            seq,
            reader: Mutex::new(reader),
            auditor: Mutex::new(Auditor::new(policy)),
        })
    }

    /// Run `f` on the read-only connection, refreshed to the latest size.
    fn read<T>(&self, f: impl FnOnce(&SqliteStore) -> Result<T, LineageError>) -> Result<T, LineageError> {
        let mut r = self
            .reader
            .lock()
            .map_err(|_| LineageError::Read("the reader lock is poisoned".into()))?;
        r.refresh_size().map_err(read_err)?;
        f(&r)
    }
}

fn receipt(r: modelgate_store::Receipt) -> Receipt {
    Receipt {
        index: r.index,
        size: r.size,
    }
}

impl LineageLog for StoreLineage {
    fn append(&self, record: Vec<u8>) -> Result<Receipt, LineageError> {
        self.seq
            .submit(record)
            .map(receipt)
            .map_err(|e| LineageError::Write(e.to_string()))
    }

    fn append_then(&self, record: Vec<u8>, then: Then) -> Result<(), LineageError> {
        self.seq
            .submit_with(record, move |r| {
                then(r.map(receipt).map_err(|e| LineageError::Write(e.to_string())))
            })
            .map_err(|e| LineageError::Write(e.to_string()))
    }

    fn size(&self) -> Result<u64, LineageError> {
        self.read(|r| r.size().map_err(read_err))
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, LineageError> {
        self.read(|r| r.entries(start, end).map_err(read_err))
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, LineageError> {
        self.read(|r| r.latest_checkpoint().map_err(read_err))
    }

    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, LineageError> {
        self.read(|r| r.checkpoint(size).map_err(read_err))
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LineageError> {
        self.read(|r| modelgate_tlog::inclusion_proof(index, size, &Nodes(r)).map_err(read_err))
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LineageError> {
        self.read(|r| modelgate_tlog::consistency_proof(from, to, &Nodes(r)).map_err(read_err))
    }

    fn root(&self, size: u64) -> Result<Hash, LineageError> {
        self.read(|r| modelgate_tlog::root_at(size, &Nodes(r)).map_err(read_err))
    }

    fn audit(&self) -> Result<u64, LineageError> {
        let mut a = self
            .auditor
            .lock()
            .map_err(|_| LineageError::Audit("the auditor lock is poisoned".into()))?;
        self.read(|r| a.advance(r).map_err(|e| LineageError::Audit(e.to_string())))
    }
}
