//! Durable, append-only storage for modelgate's Merkle logs (the governance
//! log of the authority, the lineage log of every node).
//!
//! What it guarantees:
//!
//! - **Nothing acknowledged is lost.** [`Log::append`] (and so every
//!   [`Sequencer`] receipt) returns only after the entries, the node hashes
//!   they complete and the new signed checkpoint are committed in one
//!   transaction and fsynced. A crash at any moment leaves the store at a
//!   batch boundary; the crash tests kill a writer under load and check it.
//! - **One writer.** A store open for writing holds an exclusive lock; a
//!   second writer gets [`StoreError::Locked`], never a shared log.
//! - **Changes to history are found.** [`audit`] recomputes every leaf and
//!   node hash from the entries, checks every checkpoint's signature and
//!   root and the consistency between successive checkpoints, and names the
//!   first discrepancy. The tamper tests edit the database through SQL and
//!   by raw bytes.
//! - **No database type leaks.** [`LogStore`] speaks entries, hashes and
//!   checkpoint bytes; [`SqliteStore`] is one implementation (bundled SQLite,
//!   WAL, `synchronous=FULL`, versioned schema), and a PostgreSQL one fits
//!   behind the same trait.
//! - **Bounded memory.** The sequencer's queue is bounded; when it is full,
//!   submitters are told [`SubmitError::Busy`] at once.

mod audit;
mod error;
mod log;
mod mirror;
mod sequencer;
mod sqlite;
mod store;

pub use audit::{audit, AuditError, AuditReport, Auditor};
pub use error::StoreError;
pub use log::{Appended, Log, MAX_ENTRY_BYTES};
pub use mirror::{Extended, Mirror, MirrorError};
pub use sequencer::{Receipt, Sequencer, SequencerConfig, SubmitError};
pub use sqlite::SqliteStore;
pub use store::{read_tile, Batch, Lease, LogStore, Nodes};
