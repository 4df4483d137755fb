//! Verifying inclusion and consistency proofs, exactly as RFC 9162 §2.1.3.2
//! and §2.1.4.2 describe. Everything here is pure arithmetic on hashes the
//! caller got from somewhere untrusted; only a root from a verified
//! checkpoint gives the result meaning.

use crate::hash::{node_hash, Hash, EMPTY_ROOT};

/// Why a proof was rejected. Each variant names the failed condition so an
/// auditor can tell a malformed proof from a log that lied.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// `index >= size`.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// `size1 > size2`.
    #[error("size1 {size1} is greater than size2 {size2}")]
    SizeOrder {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// The proof has a different number of hashes than the sizes require.
    #[error("proof has {got} hashes, the tree shape requires {want}")]
    WrongLength {
        /// Hashes given.
        got: usize,
        /// Hashes the shape requires.
        want: usize,
    },
    /// The proof recomputes a different root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// The proof recomputes a different old root (consistency only).
    #[error("proof does not lead to the expected first root")]
    FirstRootMismatch,
    /// The roots of two trees of equal size differ.
    #[error("trees of equal size {size} have different roots")]
    EqualSizeRootsDiffer {
        /// The size of both trees.
        size: u64,
    },
    /// A root of the empty tree that is not `SHA-256("")`.
    #[error("the root of an empty tree must be SHA-256 of the empty string")]
    BadEmptyRoot,
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Levels where the path has a sibling: below the point where index and the
    // last leaf index share a subtree, every level; above it, one per level
    // where the last index still has a left neighbour.
    let (mut fn_, mut sn) = (index, size.saturating_sub(1));
    let mut n = 0;
    while sn > 0 {
        if fn_ & 1 == 1 || fn_ != sn {
            n += 1;
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    n
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–5,
/// without the final comparison).
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        // Unreachable after the length check, kept because the RFC's loop
        // makes it the guard against an over-long proof.
        if sn == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    Ok(r)
}

/// Verify that `leaf` (a leaf hash, see [`crate::leaf_hash`]) is at `index`
/// in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Number of hashes in a consistency proof from `size1` to `size2`
/// (`0 < size1 < size2`), as RFC 9162 §2.1.4.1 generates it.
pub fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    if size1 == 0 || size1 >= size2 {
        return 0;
    }
    let mut fn_ = size1 - 1;
    let mut sn = size2 - 1;
    // Drop the levels where the old tree is a complete left subtree.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // One hash for the old tree's largest complete subtree (omitted when the
    // old tree is itself complete), then one per level with a sibling.
    let mut n = usize::from(!size1.is_power_of_two());
    while sn > 0 {
        if fn_ & 1 == 1 || fn_ != sn {
            n += 1;
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    n
}

/// Verify that the tree of `size2` leaves with root `root2` extends the tree
/// of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots; every tree extends the
/// empty tree, whose root must be `SHA-256("")`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOrder { size1, size2 });
    }
    if size1 == 0 || size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        if size1 == 0 && *root1 != EMPTY_ROOT {
            return Err(ProofError::BadEmptyRoot);
        }
        if size2 == 0 && *root2 != EMPTY_ROOT {
            return Err(ProofError::BadEmptyRoot);
        }
        if size1 == size2 && root1 != root2 {
            return Err(ProofError::EqualSizeRootsDiffer { size: size1 });
        }
        return Ok(());
    }
    let want = consistency_proof_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    // Step 2: a complete old tree is its own first proof node.
    let (first, rest): (&Hash, &[Hash]) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        match proof.split_first() {
            Some((f, r)) => (f, r),
            None => return Err(ProofError::WrongLength { got: 0, want }),
        }
    };
    let mut fn_ = size1 - 1;
    let mut sn = size2 - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    if fr != *root1 {
        return Err(ProofError::FirstRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{consistency_proof, inclusion_proof, MemoryTree};

    #[test]
    fn lengths_match_generated_proofs() {
        let mut tree = MemoryTree::new();
        for i in 0..130u32 {
            tree.append(leaf_hash(&i.to_le_bytes()));
        }
        for size in 1..=130u64 {
            for index in 0..size {
                let p = inclusion_proof(index, size, &tree).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size), "inclusion {index}/{size}");
            }
            for size1 in 1..size {
                let p = consistency_proof(size1, size, &tree).unwrap();
                assert_eq!(
                    p.len(),
                    consistency_proof_len(size1, size),
                    "consistency {size1}/{size}"
                );
            }
        }
    }
}
