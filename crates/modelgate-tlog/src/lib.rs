//! The transparency-log core of modelgate: RFC 6962 Merkle trees and proofs,
//! C2SP signed notes, checkpoints, cosignatures, tiles and offline proofs.
//!
//! The governance log, every runtime node's lineage log, the audit CLI and the
//! console's proof viewer are built on this crate, so it follows the
//! standards byte for byte and interoperates with the Go sumdb, Sigsum,
//! Sunlight, Tessera and Rekor v2 ecosystem:
//!
//! - hashing and proofs: RFC 6962 §2.1, verified per RFC 9162 §2.1.3.2 and
//!   §2.1.4.2 ([`verify_inclusion`], [`verify_consistency`]);
//! - <https://c2sp.org/signed-note> with the Go sumdb key strings ([`Note`],
//!   [`VerifierKey`], [`SignerKey`]);
//! - <https://c2sp.org/tlog-checkpoint> and <https://c2sp.org/tlog-cosignature>
//!   (`cosignature/v1`, type `0x04`) with a k-of-n witness policy
//!   ([`Checkpoint`], [`CheckpointPolicy`]);
//! - <https://c2sp.org/tlog-tiles> ([`TileId`], [`parse_path`], entry bundles,
//!   [`TileHashReader`]);
//! - <https://c2sp.org/tlog-proof> ([`TlogProof`]).
//!
//! # Guarantees
//!
//! - Pure: no I/O, no async, no clock and no randomness. Time (cosignature
//!   timestamps) and key seeds are passed in, so every function is
//!   deterministic and the crate runs anywhere, including in a browser.
//! - Every parser of untrusted bytes is strict (one canonical encoding per
//!   value), bounded (note size, signature lines, proof length), returns an
//!   [`Error`] that names what was wrong, and never panics; each has a fuzz
//!   target under `fuzz/`.
//! - A verifier accepts only what it can prove: a note needs a valid
//!   signature from a known key and any known-key signature that fails
//!   rejects it; a checkpoint needs the log's signature, its origin and the
//!   witness quorum; a proof must have exactly the length its tree shape
//!   requires.
//!
//! # Why our own code
//!
//! The Rust crates for these formats are young (`tlog_tiles`, for instance,
//! is a 0.x port of Go's `tlog` first released in 2025) and none we found
//! covers the whole set used here (notes, cosignature/v1, witness policy,
//! tiles, tlog-proof) in one crate without I/O. The formats are small and
//! exactly specified, so this crate implements them on `sha2` and
//! `ed25519-dalek`, and its tests hold it to the published vectors.
//!
//! # Example: append, sign a checkpoint, prove, verify offline
//!
//! ```
//! use modelgate_tlog::*;
//!
//! // The log: append three entries.
//! let mut tree = MemoryTree::new();
//! let entries: [&[u8]; 3] = [b"model registered", b"model approved", b"policy published"];
//! for e in entries {
//!     tree.append(leaf_hash(e));
//! }
//!
//! // Sign a checkpoint with the log's note key (seed from a real RNG in practice).
//! let log_key = SignerKey::from_seed("example.com/log", KeyType::Ed25519, &[7u8; 32])?;
//! let checkpoint = Checkpoint {
//!     origin: "example.com/log".into(),
//!     size: tree.size(),
//!     root: tree.root(),
//!     extensions: vec![],
//! };
//! let note = checkpoint.sign(&log_key)?;
//!
//! // A self-contained proof that entry 1 is in the log.
//! let proof = TlogProof {
//!     extra: None,
//!     index: 1,
//!     hashes: inclusion_proof(1, tree.size(), &tree).map_err(|e| e.to_string())?,
//!     checkpoint: note.to_bytes(),
//! };
//! let text = proof.to_bytes();
//!
//! // An auditor with nothing but the verifier key string and the entry.
//! let vkey: VerifierKey = log_key.verifier().to_string().parse()?;
//! let policy = CheckpointPolicy::new(vkey, vec![], 0)?;
//! let verified = TlogProof::parse(&text)?.verify(&leaf_hash(b"model approved"), &policy)?;
//! assert_eq!(verified.index, 1);
//! assert_eq!(verified.checkpoint.checkpoint.size, 3);
//!
//! // A different entry does not verify.
//! assert!(TlogProof::parse(&text)?.verify(&leaf_hash(b"model revoked"), &policy).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
mod error;
mod hash;
mod note;
mod proof;
mod tile;
mod tlog_proof;
mod tree;

pub use checkpoint::{Checkpoint, CheckpointPolicy, VerifiedCheckpoint};
pub use error::Error;
pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT, HASH_LEN};
pub use note::{
    is_valid_key_name, key_id, KeyType, Note, Signature, SignerKey, VerifiedNote, VerifierKey, MAX_NOTE_BYTES,
    MAX_SIGNATURES,
};
pub use proof::{
    consistency_proof_len, inclusion_proof_len, root_from_inclusion_proof, verify_consistency, verify_inclusion,
    ProofError,
};
pub use tile::{
    decode_entry_bundle, encode_entry_bundle, encode_index, parse_path, tile_data, TileHashReader, TileId, TilePath,
    TileReadError, TileSource, MAX_ENTRY_LEN, TILE_HEIGHT, TILE_WIDTH,
};
pub use tlog_proof::{TlogProof, VerifiedProof};
pub use tree::{
    consistency_proof, inclusion_proof, root_at, CompactTree, HashReader, MemoryTree, MissingNode, TreeError,
};
