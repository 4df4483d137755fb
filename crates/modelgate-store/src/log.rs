//! A signed Merkle log over a [`LogStore`]: each appended batch is hashed,
//! integrated into the tree, covered by a new signed checkpoint and written
//! in one durable step.

use modelgate_tlog::{leaf_hash, Checkpoint, CompactTree, Hash, SignerKey, MAX_ENTRY_LEN};

use crate::error::StoreError;
use crate::store::{Batch, LogStore, Nodes};

/// Largest entry a log accepts: what a C2SP entry bundle can carry.
pub const MAX_ENTRY_BYTES: usize = MAX_ENTRY_LEN;

/// The result of a durable append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Index of the batch's first entry.
    pub first: u64,
    /// The log's size after the batch.
    pub size: u64,
    /// The new root.
    pub root: Hash,
    /// The signed checkpoint note for `size`.
    pub checkpoint: Vec<u8>,
}

/// The stored checkpoint `note` (at `cp_size`) must be for the tree of
/// `size` entries, rooted where `tree` is, and of `key`'s log.
fn check_tree(note: &[u8], cp_size: u64, size: u64, tree: &CompactTree, key: &SignerKey) -> Result<(), StoreError> {
    let note = modelgate_tlog::Note::parse(note).map_err(|e| StoreError::Corrupt(format!("latest checkpoint: {e}")))?;
    let cp = Checkpoint::parse(note.text()).map_err(|e| StoreError::Corrupt(format!("latest checkpoint: {e}")))?;
    if cp.size != cp_size || cp.size != size || cp.root != tree.root() {
        return Err(StoreError::Corrupt(format!(
            "latest checkpoint (size {}) does not match the stored tree (size {size})",
            cp.size
        )));
    }
    if cp.origin != key.name() {
        return Err(StoreError::Corrupt(format!(
            "the store holds the log {:?}, not {:?}",
            cp.origin,
            key.name()
        )));
    }
    Ok(())
}

/// A log: a store, its tree, and the key that signs its checkpoints.
pub struct Log<S: LogStore> {
    store: S,
    tree: CompactTree,
    key: SignerKey,
}

impl<S: LogStore> Log<S> {
    /// Open a log over `store`, signing with `key` (whose name is the origin).
    /// The tree is rebuilt from stored nodes and must match the latest
    /// stored checkpoint's root, so a store whose tree was damaged is refused
    /// before anything is appended to it.
    pub fn open(mut store: S, key: SignerKey) -> Result<Self, StoreError> {
        // A shared database's handle may know an older size than its latest checkpoint's.
        let size = store.refresh()?;
        let tree = CompactTree::from_reader(size, &Nodes(&store))?;
        // The checkpoint at the size read, not the latest: another process
        // may have appended to a shared database since.
        match store.checkpoint(size)? {
            Some(note) => check_tree(&note, size, size, &tree, &key)?,
            None => {
                if let Some((cp_size, _)) = store.latest_checkpoint()? {
                    return Err(StoreError::Corrupt(format!(
                        "the store holds {size} entries and no checkpoint for them (its latest is for {cp_size})"
                    )));
                }
            }
        }
        Ok(Self { store, tree, key })
    }

    /// Follow a store that another process appends to (a replica of a
    /// shared database): re-read its size and rebuild the tree to it,
    /// checked against the signed checkpoint at that size, as [`Log::open`]
    /// checks. The new size; on any error nothing changed.
    pub fn resync(&mut self) -> Result<u64, StoreError> {
        let size = self.store.refresh()?;
        let held = self.tree.size();
        if size == held {
            return Ok(size);
        }
        if size < held {
            return Err(StoreError::Corrupt(format!(
                "the store holds {size} entries, fewer than the {held} already read from it"
            )));
        }
        let tree = CompactTree::from_reader(size, &Nodes(&self.store))?;
        let note = self
            .store
            .checkpoint(size)?
            .ok_or_else(|| StoreError::Corrupt(format!("no signed checkpoint for the stored size {size}")))?;
        check_tree(&note, size, size, &tree, &self.key)?;
        self.tree = tree;
        Ok(size)
    }

    /// Append only under `lease` from now on (see [`LogStore::set_lease`]).
    pub fn set_lease(&mut self, lease: Option<crate::store::Lease>) {
        self.store.set_lease(lease);
    }

    /// Number of entries.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The store, for reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Check a batch before anything is hashed or written.
    pub fn validate(entries: &[Vec<u8>]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        if let Some((position, e)) = entries.iter().enumerate().find(|(_, e)| e.len() > MAX_ENTRY_BYTES) {
            return Err(StoreError::EntryTooLarge {
                position,
                len: e.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        Ok(())
    }

    /// Append `entries` durably; returns once they are on disk with their
    /// signed checkpoint. On any error nothing was appended, in memory or on
    /// disk.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<Appended, StoreError> {
        Self::validate(entries)?;
        let start = self.tree.size();
        let mut tree = self.tree.clone();
        let mut nodes = Vec::with_capacity(entries.len() * 2);
        for e in entries {
            tree.append(leaf_hash(e), |level, index, hash| nodes.push((level, index, *hash)));
        }
        let checkpoint = Checkpoint {
            origin: self.key.name().to_owned(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        };
        let note = checkpoint
            .sign(&self.key)
            .map_err(|e| match e {
                modelgate_tlog::Error::Signing(m) => StoreError::Signing(m),
                e => StoreError::Io(format!("signing the checkpoint: {e}")),
            })?
            .to_bytes();
        self.store.append(&Batch {
            start,
            entries,
            nodes: &nodes,
            checkpoint: &note,
        })?;
        self.tree = tree;
        Ok(Appended {
            first: start,
            size: checkpoint.size,
            root: checkpoint.root,
            checkpoint: note,
        })
    }

    /// Close the store.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.store.close()
    }

    /// Give the store back (used by the sequencer on shutdown).
    pub fn into_store(self) -> S {
        self.store
    }
}
