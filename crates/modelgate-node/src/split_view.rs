//! Split views: two checkpoints of one log, both signed by its key, that
//! cannot both be true — the authority showed two nodes two histories.
//!
//! Nodes exchange their latest verified checkpoint with configured peers
//! (the gateway's `/peer/checkpoint`). Two checkpoints of one origin are
//! consistent when the smaller tree is a prefix of the larger one. The
//! evidence this module builds proves the opposite to anyone, offline, with
//! the log's verifier key and nothing else:
//! - at equal sizes, two different roots;
//! - at different sizes, an RFC 6962 consistency proof that the larger tree
//!   extends a tree of the smaller size whose root (`implied_root`) is not
//!   the smaller checkpoint's root. The proof verifies against the larger
//!   signed root, so (hash collisions aside) the larger tree's prefix is not
//!   the tree the smaller checkpoint signed.
//!
//! A consistency proof that does not verify proves nothing (whoever sent it
//! may be lying) and is never evidence.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_tlog::{verify_consistency, Checkpoint, Hash, Note, VerifierKey};
use serde::{Deserialize, Serialize};

/// The evidence document's format tag.
pub const SPLIT_VIEW_FORMAT: &str = "modelgate-split-view/v1";

/// Evidence of a split view (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitView {
    /// [`SPLIT_VIEW_FORMAT`].
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// The two signed checkpoint notes, the smaller tree first.
    pub checkpoints: [String; 2],
    /// A consistency proof (base64 hashes) from the first size to the second
    /// (empty at equal sizes).
    pub consistency: Vec<String>,
    /// The root of the second tree at the first size, as the proof shows it
    /// (base64; absent at equal sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implied_root: Option<String>,
    /// Who found it (a node id) and when (POSIX seconds): not part of the proof.
    pub found_by: String,
    /// When.
    pub found_at: u64,
}

/// A signed checkpoint: the note text and what it says.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The whole note, as served.
    pub note: String,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
}

/// Parse a note and check the log's signature on it (cosignatures are not
/// needed: the log's own signature is what it cannot deny).
pub fn signed_by_log(note: &[u8], log: &VerifierKey) -> Result<Signed, String> {
    let text = std::str::from_utf8(note).map_err(|_| "the checkpoint is not UTF-8".to_owned())?;
    let n = Note::parse(note).map_err(|e| format!("the checkpoint note: {e}"))?;
    let v = n
        .verify(std::slice::from_ref(log))
        .map_err(|e| format!("the checkpoint is not signed by {}: {e}", log.name()))?;
    if !v.verified.iter().any(|(k, _)| k == log) {
        return Err(format!("the checkpoint is not signed by {}", log.name()));
    }
    let checkpoint = Checkpoint::parse(n.text()).map_err(|e| format!("the checkpoint: {e}"))?;
    if checkpoint.origin != log.name() {
        return Err(format!(
            "the checkpoint's origin is {:?}, the log key's {:?}",
            checkpoint.origin,
            log.name()
        ));
    }
    Ok(Signed {
        note: text.to_owned(),
        checkpoint,
    })
}

/// Compare two checkpoints of one log. `proof` is, when the sizes differ,
/// a consistency proof from the smaller size to the larger one with the
/// root it claims for the smaller size (from whoever serves the larger tree).
///
/// `Ok(None)`: consistent. `Ok(Some(evidence))`: a split view, proven.
/// `Err`: nothing can be concluded (the proof does not verify, or none was
/// given for different sizes).
pub fn compare(
    a: &Signed,
    b: &Signed,
    proof: Option<(&[Hash], Hash)>,
    found_by: &str,
    found_at: u64,
) -> Result<Option<SplitView>, String> {
    let (small, large) = if a.checkpoint.size <= b.checkpoint.size {
        (a, b)
    } else {
        (b, a)
    };
    if small.checkpoint.origin != large.checkpoint.origin {
        return Err("two different logs".into());
    }
    let evidence = |consistency: Vec<String>, implied_root: Option<String>| SplitView {
        format: SPLIT_VIEW_FORMAT.into(),
        origin: small.checkpoint.origin.clone(),
        checkpoints: [small.note.clone(), large.note.clone()],
        consistency,
        implied_root,
        found_by: found_by.to_owned(),
        found_at,
    };
    if small.checkpoint.size == large.checkpoint.size {
        return Ok((small.checkpoint.root != large.checkpoint.root).then(|| evidence(vec![], None)));
    }
    let Some((hashes, implied)) = proof else {
        return Err("checkpoints of different sizes need a consistency proof".into());
    };
    verify_consistency(
        small.checkpoint.size,
        large.checkpoint.size,
        hashes,
        &implied,
        &large.checkpoint.root,
    )
    .map_err(|e| format!("the consistency proof does not verify against the larger checkpoint: {e}"))?;
    if implied == small.checkpoint.root {
        return Ok(None);
    }
    Ok(Some(evidence(
        hashes.iter().map(|h| B64.encode(h)).collect(),
        Some(B64.encode(implied)),
    )))
}

/// Check an evidence file with the log's verifier key: `Ok(what it proves)`
/// when both checkpoints are signed by the key and cannot both be true.
pub fn verify_split_view(bytes: &[u8], log: &VerifierKey) -> Result<String, String> {
    let e: SplitView = serde_json::from_slice(bytes).map_err(|e| format!("not a split-view evidence file: {e}"))?;
    if e.format != SPLIT_VIEW_FORMAT {
        return Err(format!("the format is {:?}, not {SPLIT_VIEW_FORMAT}", e.format));
    }
    let a = signed_by_log(e.checkpoints[0].as_bytes(), log).map_err(|x| format!("checkpoints[0]: {x}"))?;
    let b = signed_by_log(e.checkpoints[1].as_bytes(), log).map_err(|x| format!("checkpoints[1]: {x}"))?;
    let hashes: Vec<Hash> = e
        .consistency
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|v| Hash::try_from(v).ok())
                .ok_or_else(|| "a consistency hash is not base64 SHA-256".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let implied = e
        .implied_root
        .as_deref()
        .map(|r| {
            B64.decode(r)
                .ok()
                .and_then(|v| Hash::try_from(v).ok())
                .ok_or_else(|| "implied_root is not base64 SHA-256".to_owned())
        })
        .transpose()?;
    let proof = implied.map(|r| (hashes.as_slice(), r));
    match compare(&a, &b, proof, &e.found_by, e.found_at)? {
        Some(_) if a.checkpoint.size == b.checkpoint.size => Ok(format!(
            "split view: {} signed two trees of {} entries with different roots",
            log.name(),
            a.checkpoint.size
        )),
        Some(_) => {
            let (s, l) = if a.checkpoint.size < b.checkpoint.size {
                (&a, &b)
            } else {
                (&b, &a)
            };
            Ok(format!(
                "split view: {} signed a tree of {} entries whose first {} are not the tree of {} entries it also signed",
                log.name(),
                l.checkpoint.size,
                s.checkpoint.size,
                s.checkpoint.size
            ))
        }
        None => Err("the two checkpoints are consistent: this is no split view".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use modelgate_tlog::{consistency_proof, leaf_hash, root_at, KeyType, MemoryTree, SignerKey};

    fn signed(t: &MemoryTree, k: &SignerKey) -> Signed {
        let note = Checkpoint {
            origin: k.name().into(),
            size: t.size(),
            root: t.root(),
            extensions: vec![],
        }
        .sign(k)
        .unwrap()
        .to_bytes();
        signed_by_log(&note, &k.verifier()).unwrap()
    }

    fn tree(n: u64, salt: u8) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(leaf_hash(&[if i < 3 { 0 } else { salt }, i as u8]));
        }
        t
    }

    #[test]
    fn forks_are_proven_and_honest_growth_is_not() {
        let k = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[1; 32]).unwrap();
        let (a5, a9, b9, b12) = (tree(5, 1), tree(9, 1), tree(9, 2), tree(12, 2));
        // Honest growth: consistent.
        let p = consistency_proof(5, 9, &a9).unwrap();
        let implied = root_at(5, &a9).unwrap();
        assert_eq!(
            compare(&signed(&a5, &k), &signed(&a9, &k), Some((&p, implied)), "n", 1),
            Ok(None)
        );
        // Same size, two roots.
        let e = compare(&signed(&a9, &k), &signed(&b9, &k), None, "n", 1)
            .unwrap()
            .unwrap();
        let bytes = serde_json::to_vec(&e).unwrap();
        assert!(verify_split_view(&bytes, &k.verifier())
            .unwrap()
            .contains("different roots"));
        // A larger fork: the proof of the larger tree implies another prefix.
        let p = consistency_proof(5, 12, &b12).unwrap();
        let implied = root_at(5, &b12).unwrap();
        let e = compare(&signed(&a5, &k), &signed(&b12, &k), Some((&p, implied)), "n", 1)
            .unwrap()
            .unwrap();
        let bytes = serde_json::to_vec(&e).unwrap();
        assert!(verify_split_view(&bytes, &k.verifier())
            .unwrap()
            .contains("are not the tree"));
        // A proof that does not verify proves nothing.
        assert!(compare(&signed(&a5, &k), &signed(&b12, &k), Some((&p, a5.root())), "n", 1).is_err());
        // Another key, or a doctored file: refused.
        let other = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[2; 32]).unwrap();
        assert!(verify_split_view(&bytes, &other.verifier()).is_err());
        let mut doctored = e.clone();
        doctored.implied_root = Some(B64.encode(a5.root()));
        assert!(verify_split_view(&serde_json::to_vec(&doctored).unwrap(), &k.verifier()).is_err());
    }
}
