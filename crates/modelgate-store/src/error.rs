//! Storage errors. Database-specific errors are carried as text so no
//! database type leaks through the [`crate::LogStore`] trait.

/// Why a store operation failed. Nothing was changed unless the variant says so.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or handle) holds the writer lock.
    #[error("the log store {path} is locked by another writer; only one sequencer may write a log")]
    Locked {
        /// The store's path.
        path: String,
    },
    /// A sequencer whose lease was taken by another (or ran out) tried to
    /// commit: nothing was written (databases shared by several processes).
    #[error("fenced: {0}")]
    Fenced(String),
    /// The store was closed.
    #[error("the log store is closed")]
    Closed,
    /// An entry over the size limit.
    #[error("entry {position} of the batch is {len} bytes; the limit is {max}")]
    EntryTooLarge {
        /// Position in the submitted batch.
        position: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A batch with no entries.
    #[error("empty batch: nothing to append")]
    EmptyBatch,
    /// A batch that does not start at the store's size.
    #[error("batch starts at {start} but the log has {size} entries")]
    Conflict {
        /// The batch's start.
        start: u64,
        /// The store's size.
        size: u64,
    },
    /// Something requested that the store does not have.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store's contents are inconsistent (found at open or read time).
    #[error("the log store is corrupt: {0}")]
    Corrupt(String),
    /// The schema is from a newer modelgate, or could not be migrated.
    #[error("schema: {0}")]
    Schema(String),
    /// The database or the file system failed.
    #[error("storage I/O: {0}")]
    Io(String),
    /// The log key could not sign the batch's checkpoint (its token is
    /// gone, or refused): nothing was appended, and the same batch may be
    /// retried once it signs again.
    #[error("signing the checkpoint: {0}")]
    Signing(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseCorrupt => {
                StoreError::Corrupt(e.to_string())
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Io(e.to_string()),
        }
    }
}
