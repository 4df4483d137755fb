//! Property tests: for random trees of up to a few thousand leaves, every
//! generated proof verifies, and every single-bit change of a proof hash, a
//! root, an index or a size is rejected.
//!
//! A note on sizes: an RFC 9162 proof binds the tree size only through the
//! shape of the path, so a raw `verify_inclusion(leaf, i, n', proof, root_n)`
//! can succeed for an `n'` whose path has the same shape as `n`'s (see
//! `raw_proofs_bind_size_only_through_shape`). The size is bound to the root
//! by the log's signature on the checkpoint; the size tests below therefore
//! flip size bits where sizes live, in signed checkpoints and tlog-proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_tlog::*;
use proptest::prelude::*;

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append(leaf_hash(&i.to_le_bytes()));
    }
    t
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8] ^= 1 << (bit % 8);
    h
}

fn log_key() -> SignerKey {
    SignerKey::from_seed("prop.example/log", KeyType::Ed25519, &[3; 32]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_bit_flips_are_rejected(n in 1u64..3000, seed in any::<u64>()) {
        let t = tree(n);
        let root = t.root();
        let index = seed % n;
        let leaf = t.node_hash(0, index).unwrap();
        let proof = inclusion_proof(index, n, &t).unwrap();
        prop_assert_eq!(proof.len(), inclusion_proof_len(index, n));
        verify_inclusion(&leaf, index, n, &proof, &root).unwrap();

        for (k, _) in proof.iter().enumerate() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p[k] = flip(&p[k], bit);
                prop_assert!(verify_inclusion(&leaf, index, n, &p, &root).is_err(), "proof[{k}] bit {bit}");
            }
        }
        for bit in 0..256 {
            prop_assert!(verify_inclusion(&leaf, index, n, &proof, &flip(&root, bit)).is_err(), "root bit {bit}");
            prop_assert!(verify_inclusion(&flip(&leaf, bit), index, n, &proof, &root).is_err(), "leaf bit {bit}");
        }
        for bit in 0..64 {
            let i2 = index ^ (1 << bit);
            prop_assert!(verify_inclusion(&leaf, i2, n, &proof, &root).is_err(), "index bit {bit}");
        }
        // Dropping or adding a hash changes the length the shape requires.
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(&leaf, index, n, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, n, &longer, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_bit_flips_are_rejected(n in 1u64..3000, seed in any::<u64>()) {
        let t = tree(n);
        let root2 = t.root();
        let m = 1 + seed % n;
        let root1 = root_at(m, &t).unwrap();
        let proof = consistency_proof(m, n, &t).unwrap();
        prop_assert_eq!(proof.len(), consistency_proof_len(m, n));
        verify_consistency(m, n, &proof, &root1, &root2).unwrap();

        for (k, _) in proof.iter().enumerate() {
            for bit in 0..256 {
                let mut p = proof.clone();
                p[k] = flip(&p[k], bit);
                prop_assert!(verify_consistency(m, n, &p, &root1, &root2).is_err(), "proof[{k}] bit {bit}");
            }
        }
        for bit in 0..256 {
            prop_assert!(verify_consistency(m, n, &proof, &flip(&root1, bit), &root2).is_err(), "root1 bit {bit}");
            prop_assert!(verify_consistency(m, n, &proof, &root1, &flip(&root2, bit)).is_err(), "root2 bit {bit}");
        }
        if !proof.is_empty() {
            prop_assert!(verify_consistency(m, n, &proof[1..], &root1, &root2).is_err());
        }
    }

    #[test]
    fn signed_sizes_and_indexes_cannot_be_changed(n in 1u64..3000, seed in any::<u64>()) {
        let t = tree(n);
        let index = seed % n;
        let key = log_key();
        let cp = Checkpoint { origin: key.name().into(), size: n, root: t.root(), extensions: vec![] };
        let note = cp.sign(&key).unwrap();
        let policy = CheckpointPolicy::new(key.verifier(), vec![], 0).unwrap();
        let proof = TlogProof {
            extra: None,
            index,
            hashes: inclusion_proof(index, n, &t).unwrap(),
            checkpoint: note.to_bytes(),
        };
        let leaf = t.node_hash(0, index).unwrap();
        let parsed = TlogProof::parse(&proof.to_bytes()).unwrap();
        prop_assert_eq!(&parsed, &proof);
        parsed.verify(&leaf, &policy).unwrap();

        for bit in 0..64 {
            // The size bit flipped inside the signed checkpoint.
            let mut forged = cp.clone();
            forged.size ^= 1 << bit;
            let mut forged_note = Note::new(&forged.to_text()).unwrap();
            for s in note.signatures() {
                forged_note.add_signature(s.clone()).unwrap();
            }
            let p = TlogProof { checkpoint: forged_note.to_bytes(), ..proof.clone() };
            prop_assert!(p.verify(&leaf, &policy).is_err(), "size bit {bit}");
            // The index bit flipped in the proof text.
            let p = TlogProof { index: index ^ (1 << bit), ..proof.clone() };
            prop_assert!(p.verify(&leaf, &policy).is_err(), "index bit {bit}");
        }
    }

    #[test]
    fn tiles_answer_the_same_nodes_roots_and_proofs(n in 1u64..2000, seed in any::<u64>()) {
        let t = tree(n);
        let src = MemSource(&t);
        let r = TileHashReader::new(n, &src);
        prop_assert_eq!(root_at(n, &r).unwrap(), t.root());
        let index = seed % n;
        prop_assert_eq!(inclusion_proof(index, n, &r).unwrap(), inclusion_proof(index, n, &t).unwrap());
        let m = 1 + seed % n;
        prop_assert_eq!(consistency_proof(m, n, &r).unwrap(), consistency_proof(m, n, &t).unwrap());
    }
}

/// Serves tiles built from a MemoryTree, as a log's tile endpoint would.
struct MemSource<'a>(&'a MemoryTree);

impl TileSource for MemSource<'_> {
    type Error = MissingNode;
    fn tile(&self, tile: TileId) -> Result<Vec<u8>, MissingNode> {
        tile_data(tile, self.0)
    }
}

#[test]
fn raw_proofs_bind_size_only_through_shape() {
    // Documented behaviour of RFC 9162 verification, not a bug: the proof
    // for leaf 0 of a 5-leaf tree has the same shape in a 7-leaf tree.
    let t = tree(5);
    let proof = inclusion_proof(0, 5, &t).unwrap();
    let leaf = t.node_hash(0, 0).unwrap();
    assert!(verify_inclusion(&leaf, 0, 7, &proof, &t.root()).is_ok());
    // Hence sizes are only ever taken from signed checkpoints.
}

#[test]
fn tile_reader_refuses_short_tiles_and_nodes_outside_the_tree() {
    struct Short;
    impl TileSource for Short {
        type Error = ();
        fn tile(&self, _: TileId) -> Result<Vec<u8>, ()> {
            Ok(vec![0; 31])
        }
    }
    let r = TileHashReader::new(10, &Short);
    assert!(matches!(r.node_hash(0, 3), Err(TileReadError::BadTile(..))));
    assert!(matches!(r.node_hash(0, 10), Err(TileReadError::NotInTree { .. })));
    assert!(matches!(r.node_hash(4, 0), Err(TileReadError::NotInTree { .. })));
    assert!(matches!(r.node_hash(3, 1), Err(TileReadError::NotInTree { .. })));
    assert!(matches!(
        r.node_hash(255, u64::MAX),
        Err(TileReadError::NotInTree { .. })
    ));
}
