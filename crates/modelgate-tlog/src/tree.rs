//! Building trees and proofs (RFC 6962 §2.1, RFC 9162 §2.1.3.1 and §2.1.4.1).
//!
//! Storage is abstracted as "the hash of the complete subtree at (level,
//! index)": node `(l, i)` covers leaves `[i·2^l, (i+1)·2^l)`. That is exactly
//! what a tile holds, what a SQLite table of nodes holds, and what
//! [`MemoryTree`] holds, so every proof generator here works on all of them.
//! Hashes of incomplete subtrees (the right edge of a tree whose size is not a
//! power of two) are never stored: they are recomputed from complete ones.

use crate::hash::{node_hash, Hash, EMPTY_ROOT};

/// Read access to the stored hashes of complete subtrees.
pub trait HashReader {
    /// Why a hash could not be read (storage error, missing node, bad tile).
    type Error;

    /// The hash of the complete subtree covering leaves
    /// `[index · 2^level, (index + 1) · 2^level)`.
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node_hash(level, index)
    }
}

/// Why a root or proof could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeError<E> {
    /// The request names a leaf or size the tree does not have.
    #[error("{0}")]
    OutOfRange(String),
    /// The storage could not produce a node hash.
    #[error("reading node hash: {0}")]
    Read(E),
}

/// An incremental Merkle tree that remembers only the roots of its maximal
/// complete subtrees (one per set bit of the size, largest first): the
/// "compact range" `[0, size)`. Appending `N` leaves costs `N` leaf
/// integrations and at most `N` interior hashes in total, with `O(log n)`
/// memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild the compact range of a stored tree of `size` leaves by reading
    /// one node per set bit of `size`.
    pub fn from_reader<R: HashReader>(size: u64, reader: &R) -> Result<Self, R::Error> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push(reader.node_hash(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash. `on_node(level, index, hash)` is called for every
    /// complete subtree this append completes, starting with the leaf itself
    /// at level 0, so a store can persist exactly the nodes it will later
    /// serve.
    pub fn append(&mut self, leaf: Hash, mut on_node: impl FnMut(u8, u64, &Hash)) {
        let mut index = self.size;
        let mut level = 0u8;
        let mut hash = leaf;
        on_node(level, index, &hash);
        while index & 1 == 1 {
            // A set low bit means a left sibling of the same height is the
            // last peak; the size invariant guarantees it is there.
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            on_node(level, index, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The root hash of the tree: `MTH(D[0:size])`.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else { return EMPTY_ROOT };
        iter.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

/// An in-memory tree that keeps every complete subtree hash, level by level.
/// Used by tests, tools and small logs; large logs keep the same nodes in a
/// store.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    compact: CompactTree,
    levels: Vec<Vec<Hash>>,
}

/// A node that [`MemoryTree`] does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("node (level {level}, index {index}) is not in the tree")]
pub struct MissingNode {
    /// Requested level.
    pub level: u8,
    /// Requested index at that level.
    pub index: u64,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a leaf hash; returns its index.
    pub fn append(&mut self, leaf: Hash) -> u64 {
        let index = self.compact.size();
        let levels = &mut self.levels;
        self.compact.append(leaf, |level, _, hash| {
            let level = usize::from(level);
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            levels[level].push(*hash);
        });
        index
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.compact.size()
    }

    /// The current root hash.
    pub fn root(&self) -> Hash {
        self.compact.root()
    }
}

impl HashReader for MemoryTree {
    type Error = MissingNode;
    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// `MTH(D[lo:hi])` for a range whose start is aligned to a power of two at
/// least as large as the range, the only kind the RFC's recursions produce.
/// The range is split into complete subtrees, largest first, which are then
/// folded from the right, as `MTH` itself splits at the largest power of two.
fn range_hash<R: HashReader>(lo: u64, hi: u64, reader: &R) -> Result<Hash, R::Error> {
    if lo == hi {
        return Ok(EMPTY_ROOT);
    }
    let mut parts = Vec::with_capacity(8);
    let mut start = lo;
    while start < hi {
        let remaining = hi - start;
        // Largest level with start aligned and the subtree inside the range.
        let align = if start == 0 { 63 } else { start.trailing_zeros() };
        let fit = 63 - remaining.leading_zeros();
        let level = align.min(fit);
        parts.push(reader.node_hash(level as u8, start >> level)?);
        start += 1u64 << level;
    }
    let mut iter = parts.iter().rev();
    let Some(last) = iter.next() else { return Ok(EMPTY_ROOT) };
    Ok(iter.fold(*last, |acc, part| node_hash(part, &acc)))
}

/// The largest power of two strictly less than `n` (`n ≥ 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of the first `size` leaves of a stored tree.
pub fn root_at<R: HashReader>(size: u64, reader: &R) -> Result<Hash, R::Error> {
    range_hash(0, size, reader)
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves
/// (RFC 9162 §2.1.3.1), ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof<R: HashReader>(index: u64, size: u64, reader: &R) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if index >= size {
        return Err(TreeError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    let mut proof = Vec::with_capacity(64);
    path(index, 0, size, reader, &mut proof).map_err(TreeError::Read)?;
    Ok(proof)
}

/// `PATH(m, D[lo:hi])`, appending from the bottom up.
fn path<R: HashReader>(m: u64, lo: u64, hi: u64, reader: &R, out: &mut Vec<Hash>) -> Result<(), R::Error> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(m, lo, lo + k, reader, out)?;
        out.push(range_hash(lo + k, hi, reader)?);
    } else {
        path(m - k, lo + k, hi, reader, out)?;
        out.push(range_hash(lo, lo + k, reader)?);
    }
    Ok(())
}

/// The consistency proof between the trees of the first `size1` and `size2`
/// leaves (RFC 9162 §2.1.4.1). Empty when `size1` is 0 or equals `size2`.
pub fn consistency_proof<R: HashReader>(size1: u64, size2: u64, reader: &R) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if size1 > size2 {
        return Err(TreeError::OutOfRange(format!(
            "size1 {size1} is greater than size2 {size2}"
        )));
    }
    let mut proof = Vec::with_capacity(64);
    if size1 > 0 && size1 < size2 {
        subproof(size1, 0, size2, true, reader, &mut proof).map_err(TreeError::Read)?;
    }
    Ok(proof)
}

/// `SUBPROOF(m, D[lo:hi], b)`, appending from the bottom up.
fn subproof<R: HashReader>(m: u64, lo: u64, hi: u64, b: bool, reader: &R, out: &mut Vec<Hash>) -> Result<(), R::Error> {
    let n = hi - lo;
    if m == n {
        if !b {
            out.push(range_hash(lo, hi, reader)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, lo, lo + k, b, reader, out)?;
        out.push(range_hash(lo + k, hi, reader)?);
    } else {
        subproof(m - k, lo + k, hi, false, reader, out)?;
        out.push(range_hash(lo, lo + k, reader)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// MTH straight from the RFC's recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn compact_and_stored_roots_match_the_definition() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..300u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            tree.append(leaf);
            assert_eq!(tree.root(), mth(&leaves), "size {}", i + 1);
        }
        for size in 0..=300u64 {
            assert_eq!(root_at(size, &tree).unwrap(), mth(&leaves[..size as usize]));
            let compact = CompactTree::from_reader(size, &tree).unwrap();
            assert_eq!(compact.root(), mth(&leaves[..size as usize]));
        }
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let mut tree = MemoryTree::new();
        tree.append(leaf_hash(b"a"));
        assert!(matches!(inclusion_proof(1, 1, &tree), Err(TreeError::OutOfRange(_))));
        assert!(matches!(consistency_proof(2, 1, &tree), Err(TreeError::OutOfRange(_))));
        assert!(matches!(inclusion_proof(0, 2, &tree), Err(TreeError::Read(_))));
    }
}
