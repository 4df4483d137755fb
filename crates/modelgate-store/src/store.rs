//! The storage trait: what a durable Merkle log needs from a database, and
//! nothing of any particular database.

use modelgate_tlog::{Hash, HashReader, TileId};

use crate::error::StoreError;

/// One atomic, durable step of a log: the entries appended at `start`, the
/// node hashes those appends complete, and the signed checkpoint for the new
/// size `start + entries.len()`. A store writes all of it or none of it.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Index of the first entry; must equal the store's size.
    pub start: u64,
    /// The entries, in order.
    pub entries: &'a [Vec<u8>],
    /// `(level, index, hash)` of every complete subtree the entries complete.
    pub nodes: &'a [(u8, u64, Hash)],
    /// The signed checkpoint note for the new size.
    pub checkpoint: &'a [u8],
}

/// A sequencer lease on a store that several processes share: who holds
/// it, and its fencing token (larger than every earlier holder's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it (a name unique per process, e.g. host and pid).
    pub holder: String,
    /// Its fencing token.
    pub token: i64,
}

/// Durable storage for one Merkle log. Implementations hold the exclusive
/// writer lock for as long as they are open for writing, and make a batch
/// durable (on disk, fsynced) before [`LogStore::append`] returns.
pub trait LogStore: Send {
    /// Number of entries stored.
    fn size(&self) -> Result<u64, StoreError>;

    /// Append a batch atomically and durably. Fails with
    /// [`StoreError::Conflict`] if `batch.start` is not the current size.
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError>;

    /// Entries `[start, end)`.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The stored hash of node `(level, index)`.
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError>;

    /// The stored hashes of nodes `(level, start .. start + count)`, in order
    /// (one query instead of `count` for stores that can).
    fn node_hashes(&self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        (start..start + count).map(|i| self.node_hash(level, i)).collect()
    }

    /// Number of stored node hashes (the audit checks there are no extras).
    fn node_count(&self) -> Result<u64, StoreError>;

    /// The checkpoint stored for `size`, if any.
    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// The latest checkpoint and its size.
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Sizes of all stored checkpoints, ascending.
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError>;

    /// The database's own consistency check (page structure, indexes).
    fn integrity_check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Re-read the size from the database: a reader following a writer
    /// in another handle or process sees what it committed since.
    fn refresh(&mut self) -> Result<u64, StoreError> {
        self.size()
    }

    /// For a store several processes share (PostgreSQL): from now on
    /// append only under `lease`, which each commit checks, or nothing
    /// when `None`. A store with one writer by construction (SQLite's file
    /// lock) has nothing to fence and ignores it.
    fn set_lease(&mut self, _lease: Option<Lease>) {}

    /// Release the store. Later calls fail with [`StoreError::Closed`].
    fn close(&mut self) -> Result<(), StoreError>;
}

/// A boxed store is a store: the authority holds whichever database its
/// configuration names behind one type.
impl<S: LogStore + ?Sized> LogStore for Box<S> {
    fn size(&self) -> Result<u64, StoreError> {
        (**self).size()
    }
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        (**self).append(batch)
    }
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).entries(start, end)
    }
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        (**self).node_hash(level, index)
    }
    fn node_hashes(&self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        (**self).node_hashes(level, start, count)
    }
    fn node_count(&self) -> Result<u64, StoreError> {
        (**self).node_count()
    }
    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).checkpoint(size)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        (**self).latest_checkpoint()
    }
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        (**self).checkpoint_sizes()
    }
    fn integrity_check(&self) -> Result<(), StoreError> {
        (**self).integrity_check()
    }
    fn refresh(&mut self) -> Result<u64, StoreError> {
        (**self).refresh()
    }
    fn set_lease(&mut self, lease: Option<Lease>) {
        (**self).set_lease(lease)
    }
    fn close(&mut self) -> Result<(), StoreError> {
        (**self).close()
    }
}

/// A [`HashReader`] over a store's node hashes, so roots, proofs and tiles
/// are computed straight from storage.
pub struct Nodes<'a, S: ?Sized>(pub &'a S);

impl<S: LogStore + ?Sized> HashReader for Nodes<'_, S> {
    type Error = StoreError;
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0.node_hash(level, index)
    }
}

/// The bytes of a hash tile, read from a store in one range read.
pub fn read_tile<S: LogStore + ?Sized>(store: &S, tile: TileId) -> Result<Vec<u8>, StoreError> {
    let level = tile.level * modelgate_tlog::TILE_HEIGHT;
    let start = tile.index * u64::from(modelgate_tlog::TILE_WIDTH);
    let hashes = store.node_hashes(level, start, u64::from(tile.width))?;
    Ok(hashes.concat())
}
