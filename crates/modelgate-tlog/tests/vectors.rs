//! The published vectors, copied into tests/data from ../shared/vectors:
//! transparency-dev/merkle's roots, inclusion and consistency test data, the
//! Go sumdb note vectors, the C2SP signed-note example and the
//! tlog-cosignature example.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_tlog::*;
use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every JSON file under a vector folder, recursively, sorted.
fn vector_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn b64(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => B64.decode(s).unwrap(),
        other => panic!("not base64: {other}"),
    }
}

/// A vector hash as our typed hash, or `None` when it is not 32 bytes (such
/// a value can never reach a verifier: every parser refuses it first).
fn hash(v: &Value) -> Option<Hash> {
    b64(v).try_into().ok()
}

fn hashes(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(a) => a.iter().map(hash).collect(),
        other => panic!("not a proof: {other}"),
    }
}

struct Roots {
    tree: MemoryTree,
    roots: Vec<Hash>,
}

fn roots() -> Roots {
    let v = json(&data("merkle/roots.json"));
    let mut tree = MemoryTree::new();
    let mut roots = vec![];
    for input in v["leaf_inputs_hex"].as_array().unwrap() {
        tree.append(leaf_hash(&hex::decode(input.as_str().unwrap()).unwrap()));
    }
    for r in v["roots_hex"].as_array().unwrap() {
        roots.push(hex::decode(r.as_str().unwrap()).unwrap().try_into().unwrap());
    }
    Roots { tree, roots }
}

#[test]
fn roots_and_node_hashes() {
    let v = json(&data("merkle/roots.json"));
    let Roots { tree, roots } = roots();
    assert_eq!(roots.len(), 9);
    let mut compact = CompactTree::new();
    assert_eq!(compact.root(), roots[0]);
    let inputs = v["leaf_inputs_hex"].as_array().unwrap();
    for (n, input) in inputs.iter().enumerate() {
        compact.append(leaf_hash(&hex::decode(input.as_str().unwrap()).unwrap()), |_, _, _| {});
        assert_eq!(compact.root(), roots[n + 1], "compact root of {}", n + 1);
    }
    for (size, want) in roots.iter().enumerate() {
        assert_eq!(root_at(size as u64, &tree).unwrap(), *want, "stored root of {size}");
    }
    let mut checked = 0;
    for (level, nodes) in v["nodes_hex"].as_array().unwrap().iter().enumerate() {
        for (i, n) in nodes.as_array().unwrap().iter().enumerate() {
            let want: Hash = hex::decode(n.as_str().unwrap()).unwrap().try_into().unwrap();
            assert_eq!(
                tree.node_hash(level as u8, i as u64).unwrap(),
                want,
                "node ({level}, {i})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

#[test]
fn inclusion_vectors() {
    let Roots { tree, .. } = roots();
    let files = vector_files("merkle/inclusion");
    assert_eq!(files.len(), 98, "the copied vector set changed");
    let (mut accepted, mut rejected) = (0, 0);
    for f in &files {
        let v = json(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let index = v["leafIdx"].as_u64().unwrap();
        let size = v["treeSize"].as_u64().unwrap();
        let parsed = (hash(&v["leafHash"]), hash(&v["root"]), hashes(&v["proof"]));
        let result = match parsed {
            (Some(leaf), Some(root), Some(proof)) => {
                let r = verify_inclusion(&leaf, index, size, &proof, &root);
                if r.is_ok() {
                    // A proof we accept is one we would have generated.
                    assert_eq!(inclusion_proof(index, size, &tree).unwrap(), proof, "{}", f.display());
                }
                r.map_err(|e| e.to_string())
            }
            _ => Err("not a 32-byte hash".to_string()),
        };
        assert_eq!(result.is_err(), want_err, "{}: {}: {result:?}", f.display(), v["desc"]);
        if want_err {
            rejected += 1
        } else {
            accepted += 1
        }
    }
    assert!(
        accepted >= 6 && rejected >= 80,
        "accepted {accepted}, rejected {rejected}"
    );
}

#[test]
fn consistency_vectors() {
    let Roots { tree, roots } = roots();
    let files = vector_files("merkle/consistency");
    assert_eq!(files.len(), 98, "the copied vector set changed");
    for f in &files {
        let v = json(f);
        let want_err = v["wantErr"].as_bool().unwrap();
        let size1 = v["size1"].as_u64().unwrap();
        let size2 = v["size2"].as_u64().unwrap();
        let parsed = (hash(&v["root1"]), hash(&v["root2"]), hashes(&v["proof"]));
        let result = match parsed {
            (Some(r1), Some(r2), Some(proof)) => {
                let r = verify_consistency(size1, size2, &proof, &r1, &r2);
                if r.is_ok() && size2 <= 8 {
                    assert_eq!(
                        consistency_proof(size1, size2, &tree).unwrap(),
                        proof,
                        "{}",
                        f.display()
                    );
                    assert_eq!((r1, r2), (roots[size1 as usize], roots[size2 as usize]));
                }
                r.map_err(|e| e.to_string())
            }
            _ => Err("not a 32-byte hash".to_string()),
        };
        let desc = v["desc"].as_str().unwrap();
        if desc == "sizes are equal (one) and proof is empty" {
            // The one accepting vector whose "roots" are the 12-byte strings
            // "don't care 2": Go compares them as opaque bytes. Our roots are
            // typed 32-byte hashes, so such input is refused at the parser,
            // which is stricter. Check the rule the vector is about with real
            // hashes instead: equal sizes, empty proof, equal roots pass.
            assert!(!want_err && result.is_err());
            verify_consistency(1, 1, &[], &roots[1], &roots[1]).unwrap();
            verify_consistency(5, 5, &[], &roots[5], &roots[5]).unwrap();
            continue;
        }
        assert_eq!(result.is_err(), want_err, "{}: {desc}: {result:?}", f.display());
    }
}

#[test]
fn generated_proofs_for_all_sizes_of_the_vector_tree_verify() {
    let Roots { tree, roots } = roots();
    for size in 1..=8u64 {
        for index in 0..size {
            let proof = inclusion_proof(index, size, &tree).unwrap();
            let leaf = tree.node_hash(0, index).unwrap();
            verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]).unwrap();
        }
        for size1 in 0..=size {
            let proof = consistency_proof(size1, size, &tree).unwrap();
            verify_consistency(size1, size, &proof, &roots[size1 as usize], &roots[size as usize]).unwrap();
        }
    }
}

fn notes() -> Value {
    json(&data("signed-note.json"))
}

#[test]
fn go_sumdb_keys_and_signature() {
    let v = &notes()["go_sumdb"];
    let signer = SignerKey::parse(v["signer_key"].as_str().unwrap()).unwrap();
    let peter = VerifierKey::parse(v["verifier_keys"][0].as_str().unwrap()).unwrap();
    let enoch = VerifierKey::parse(v["verifier_keys"][1].as_str().unwrap()).unwrap();
    assert_eq!(signer.verifier(), peter);
    assert_eq!(peter.to_string(), v["verifier_keys"][0].as_str().unwrap());
    assert_eq!(signer.to_private_string(), v["signer_key"].as_str().unwrap());
    assert_eq!(peter.key_id(), 0xc74f20a3);
    assert_eq!(enoch.key_id(), 0xaf0cfe78);

    // Ed25519 is deterministic: our signature is the Go one, byte for byte.
    let text = v["text"].as_str().unwrap();
    let mut note = Note::new(text).unwrap();
    note.add_signature(signer.sign(text).unwrap()).unwrap();
    let signed = v["signed_by_peter"].as_str().unwrap();
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), signed);

    let parsed = Note::parse(signed.as_bytes()).unwrap();
    let ok = parsed.verify(std::slice::from_ref(&peter)).unwrap();
    assert_eq!(ok.text, text);
    assert_eq!(ok.verified.len(), 1);
    // Only Enoch is known: no verified signature → rejected.
    assert_eq!(parsed.verify(std::slice::from_ref(&enoch)), Err(Error::UnverifiedNote));

    // Two signatures; each verifier sees its own, the other is "unknown".
    let both = format!("{signed}{}", v["enoch_signature_line"].as_str().unwrap());
    let n = Note::parse(both.as_bytes()).unwrap();
    let ok = n.verify(&[peter.clone(), enoch.clone()]).unwrap();
    assert_eq!(ok.verified.len(), 2);
    let ok = n.verify(std::slice::from_ref(&peter)).unwrap();
    assert_eq!((ok.verified.len(), ok.unknown.len()), (1, 1));
    assert_eq!(ok.unknown[0].name, "EnochRoot");

    // A known key whose signature fails rejects the whole note.
    let mut tampered = both.clone().into_bytes();
    tampered[3] ^= 1;
    let n = Note::parse(&tampered).unwrap();
    assert!(matches!(
        n.verify(&[peter.clone(), enoch]),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn every_truncation_and_byte_change_of_a_good_verifier_key_is_rejected() {
    let v = notes();
    let mut good: Vec<String> = v["go_sumdb"]["verifier_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    good.push(v["c2sp_example"]["verifier_key"].as_str().unwrap().to_owned());
    for bad in v["go_sumdb"]["bad_verifier_keys"].as_array().unwrap() {
        assert!(VerifierKey::parse(bad.as_str().unwrap()).is_err(), "{bad}");
    }
    let mut tried = 0usize;
    for key in &good {
        VerifierKey::parse(key).unwrap();
        let bytes = key.as_bytes();
        for len in 0..bytes.len() {
            if let Ok(s) = std::str::from_utf8(&bytes[..len]) {
                assert!(VerifierKey::parse(s).is_err(), "truncation {s:?} accepted");
                tried += 1;
            }
        }
        // Every position, every other byte value that keeps the string UTF-8.
        for pos in 0..bytes.len() {
            for b in 0..=255u8 {
                if b == bytes[pos] {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[pos] = b;
                if let Ok(s) = std::str::from_utf8(&m) {
                    assert!(
                        VerifierKey::parse(s).is_err(),
                        "changed byte {pos} to {b:#04x}: {s:?} accepted"
                    );
                    tried += 1;
                }
            }
        }
    }
    assert!(tried > 3 * 60 * 120, "only {tried} variants tried");
}

#[test]
fn c2sp_signed_note_example() {
    let v = &notes()["c2sp_example"];
    let key = VerifierKey::parse(v["verifier_key"].as_str().unwrap()).unwrap();
    let note = Note::parse(v["signed_note"].as_str().unwrap().as_bytes()).unwrap();
    let ok = note.verify(&[key]).unwrap();
    assert_eq!(ok.text, "This is an example message.\n");
}

#[test]
fn cosignature_example_parses_and_reads_its_timestamp() {
    let v = &notes()["cosignature_example"];
    let note = Note::parse(v["note"].as_str().unwrap().as_bytes()).unwrap();
    let cp = Checkpoint::parse(note.text()).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.to_text(), note.text());
    let sigs = note.signatures();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[1].name, "witness.example.com/w1");
    assert_eq!(
        sigs[1].cosignature_timestamp(),
        Some(v["cosignature_timestamp"].as_u64().unwrap())
    );
    assert_eq!(sigs[1].cosignature_timestamp(), Some(1679315147));
    // The log's signature is a plain 64-byte Ed25519 signature, not a cosignature.
    assert_eq!(sigs[0].sig.len(), 64);
    assert_eq!(sigs[0].cosignature_timestamp(), None);
}
