//! A mirror: a durable copy of a log someone else writes and signs (a
//! node's lineage log, kept by the authority). It grows only by batches that
//! reproduce a checkpoint the log's owner signed, is never rewritten, and
//! finds a signed checkpoint that disagrees with what it already holds —
//! two histories signed by the same key — as [`MirrorError::Inconsistent`],
//! with both signed notes as evidence.

use modelgate_tlog::{leaf_hash, root_at, verify_consistency, CheckpointPolicy, CompactTree, Hash, VerifiedCheckpoint};

use crate::error::StoreError;
use crate::log::MAX_ENTRY_BYTES;
use crate::store::{Batch, LogStore, Nodes};

/// Why a batch was not added. Nothing was written in any case.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MirrorError {
    /// The batch does not start where the mirror ends.
    #[error("the batch starts at {from}; the mirror holds {size} records")]
    Gap {
        /// Where the batch starts.
        from: u64,
        /// What the mirror holds.
        size: u64,
    },
    /// The batch cannot be what it claims: its checkpoint is not signed by
    /// the owner's key, its size is not `from + records`, a record is too
    /// large, its consistency proof fails, or its records do not make the
    /// signed root. Anyone can send such a batch, so it proves nothing
    /// against the owner.
    #[error("{0}")]
    Invalid(String),
    /// The owner signed a checkpoint that contradicts one it signed before
    /// (held by the mirror, or carried by an anchor): evidence of a fork.
    #[error("two histories signed by the same key: {detail}")]
    Inconsistent {
        /// What disagrees.
        detail: String,
        /// The earlier signed checkpoint (the mirror's, or the anchor's).
        held: Vec<u8>,
        /// The signed checkpoint that contradicts it.
        offered: Vec<u8>,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extended {
    /// Appended: the mirror's new size.
    Appended(u64),
    /// The mirror already held this history up to the offered size.
    AlreadyHeld(u64),
}

/// A mirror of one log over a [`LogStore`].
pub struct Mirror<S: LogStore> {
    store: S,
    tree: CompactTree,
    policy: CheckpointPolicy,
}

impl<S: LogStore> Mirror<S> {
    /// Open a mirror over `store`, of the log whose checkpoints `policy`
    /// verifies (the owner's key). The stored tree must match the stored
    /// latest checkpoint, which must verify under `policy`.
    pub fn open(store: S, policy: CheckpointPolicy) -> Result<Self, StoreError> {
        let size = store.size()?;
        let tree = CompactTree::from_reader(size, &Nodes(&store))?;
        if let Some((cp_size, note)) = store.latest_checkpoint()? {
            let v = policy
                .verify(&note)
                .map_err(|e| StoreError::Corrupt(format!("the mirror's latest checkpoint: {e}")))?;
            if cp_size != size || v.checkpoint.size != size || v.checkpoint.root != tree.root() {
                return Err(StoreError::Corrupt(format!(
                    "the mirror's latest checkpoint (size {}) does not match its tree (size {size})",
                    v.checkpoint.size
                )));
            }
        }
        Ok(Self { store, tree, policy })
    }

    /// Records held.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The store underneath (for reads, proofs and audits).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The latest signed checkpoint held.
    pub fn latest(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.store.latest_checkpoint()?.map(|(_, n)| n))
    }

    fn held_note(&self) -> Vec<u8> {
        self.latest().ok().flatten().unwrap_or_default()
    }

    /// `v` (signed, of size ≤ ours) has our root at its size.
    fn agrees(&self, v: &VerifiedCheckpoint, offered: &[u8], held: Vec<u8>) -> Result<(), MirrorError> {
        let size = v.checkpoint.size;
        if size > self.size() || size == 0 {
            return Ok(());
        }
        let ours = root_at(size, &Nodes(&self.store))?;
        if ours == v.checkpoint.root {
            return Ok(());
        }
        Err(MirrorError::Inconsistent {
            detail: format!("the offered checkpoint has another root at size {size} than the history already held"),
            held,
            offered: offered.to_vec(),
        })
    }

    /// Add `records` at `from`, covered by `checkpoint` (the owner's signed
    /// note for `from + records.len()`) and `consistency` (the proof from
    /// the mirror's size to that one). `anchored` is a checkpoint the owner
    /// signed and anchored elsewhere: the history kept must agree with it
    /// wherever it reaches that far. Durable when it returns `Ok`.
    pub fn extend(
        &mut self,
        from: u64,
        records: &[Vec<u8>],
        checkpoint: &[u8],
        consistency: &[Hash],
        anchored: Option<&[u8]>,
    ) -> Result<Extended, MirrorError> {
        let anchor = anchored
            .map(|a| {
                self.policy
                    .verify(a)
                    .map_err(|e| MirrorError::Invalid(format!("the anchored checkpoint: {e}")))
            })
            .transpose()?;
        let v = self
            .policy
            .verify(checkpoint)
            .map_err(|e| MirrorError::Invalid(format!("the batch's checkpoint: {e}")))?;
        let end = v.checkpoint.size;
        if from.checked_add(records.len() as u64) != Some(end) {
            return Err(MirrorError::Invalid(format!(
                "the checkpoint is for size {end}, the batch ends at {}",
                from.saturating_add(records.len() as u64)
            )));
        }
        let size = self.size();
        if let Some(a) = &anchor {
            // Anchored within what is held: the held history must be it.
            self.agrees(a, anchored.unwrap_or_default(), self.held_note())?;
        }
        if end <= size {
            // Sent again (a retry): it must be the history held.
            self.agrees(&v, checkpoint, self.held_note())?;
            return Ok(Extended::AlreadyHeld(size));
        }
        if from != size {
            return Err(MirrorError::Gap { from, size });
        }
        if let Some((i, r)) = records.iter().enumerate().find(|(_, r)| r.len() > MAX_ENTRY_BYTES) {
            return Err(MirrorError::Invalid(format!(
                "record {} is {} bytes; the limit is {MAX_ENTRY_BYTES}",
                from + i as u64,
                r.len()
            )));
        }
        if size > 0 {
            verify_consistency(size, end, consistency, &self.tree.root(), &v.checkpoint.root)
                .map_err(|e| MirrorError::Invalid(format!("the consistency proof from {size} to {end}: {e}")))?;
        }
        let mut tree = self.tree.clone();
        let mut nodes = Vec::with_capacity(records.len() * 2);
        let anchor_at = anchor
            .as_ref()
            .map(|a| a.checkpoint.size)
            .filter(|s| *s > size && *s <= end);
        let mut root_at_anchor = None;
        for r in records {
            tree.append(leaf_hash(r), |level, index, hash| nodes.push((level, index, *hash)));
            if Some(tree.size()) == anchor_at {
                root_at_anchor = Some(tree.root());
            }
        }
        if tree.root() != v.checkpoint.root {
            return Err(MirrorError::Invalid(format!(
                "the records do not make the signed root of size {end}"
            )));
        }
        if let (Some(a), Some(root)) = (&anchor, root_at_anchor) {
            if root != a.checkpoint.root {
                return Err(MirrorError::Inconsistent {
                    detail: format!(
                        "the history the node signed at size {end} has another root at size {} than the node anchored",
                        a.checkpoint.size
                    ),
                    held: anchored.unwrap_or_default().to_vec(),
                    offered: checkpoint.to_vec(),
                });
            }
        }
        self.store.append(&Batch {
            start: size,
            entries: records,
            nodes: &nodes,
            checkpoint,
        })?;
        self.tree = tree;
        Ok(Extended::Appended(end))
    }
}
