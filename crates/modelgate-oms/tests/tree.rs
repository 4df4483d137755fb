//! Hashing real directory trees: the reference's digest, exclusions, symlink rules,
//! and tampering reported by file name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use modelgate_oms::{
    hash_model, sign_manifest, verify_model, Error, HashAlgorithm, HashOptions, IgnorePath, Method, PrivateKey, Signer,
    TreeProblem, Trust, VerifyOptions, DEFAULT_IGNORES,
};

/// The tree the known-answer digest below was recorded on with model_signing 1.1.1
/// (`model_signing sign key m`): nested dirs, a dotfile, a hidden dir, UTF-8 names
/// with spaces, an empty file, and git metadata that must be left out.
fn reference_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("dir with space")).unwrap();
    fs::create_dir_all(root.join(".hidden")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join("a.txt"), "hello").unwrap();
    fs::write(root.join("empty.bin"), "").unwrap();
    fs::write(root.join("sub/deeper/big.bin"), "x".repeat(3000)).unwrap();
    fs::write(root.join("dir with space/naïve ü.txt"), "ü").unwrap();
    fs::write(root.join(".hidden/h"), "h\n").unwrap();
    fs::write(root.join(".git/config"), "g\n").unwrap();
    fs::write(root.join(".dotfile"), "d\n").unwrap();
}

const REFERENCE_ROOT: &str = "4510353a65d2f6f19edd0a9446c442fa745b19f28675d08095768d628cc369b8";

fn opts(method: Method, hash: HashAlgorithm) -> HashOptions {
    let mut o = HashOptions::new(method, hash);
    o.ignore = DEFAULT_IGNORES.iter().map(|p| IgnorePath::parse(p).unwrap()).collect();
    o.ignore.push(IgnorePath::parse("model.sig").unwrap());
    o
}

fn files() -> HashOptions {
    opts(Method::Files, HashAlgorithm::Sha256)
}

fn key() -> PrivateKey {
    PrivateKey::P256(p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap())
}

#[test]
fn root_digest_equals_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    let manifest = hash_model(&m, &files(), None).unwrap();
    assert_eq!(hex::encode(manifest.root_digest()), REFERENCE_ROOT);
    let names: Vec<_> = manifest.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            ".dotfile",
            ".hidden/h",
            "a.txt",
            "dir with space/naïve ü.txt",
            "empty.bin",
            "sub/deeper/big.bin"
        ]
    );
    // Thread count must not change the result.
    let mut one = files();
    one.threads = Some(1);
    assert_eq!(hash_model(&m, &one, None).unwrap(), manifest);
}

#[test]
fn shards_follow_the_reference_layout() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    let manifest = hash_model(
        &m,
        &opts(Method::Shards { shard_size: 1024 }, HashAlgorithm::Sha256),
        None,
    )
    .unwrap();
    let names: Vec<_> = manifest.resources.iter().map(|r| r.name.as_str()).collect();
    // Recorded from model_signing 1.1.1: an empty file has no shard.
    assert_eq!(
        names,
        [
            ".dotfile:0:2",
            ".hidden/h:0:2",
            "a.txt:0:5",
            "dir with space/naïve ü.txt:0:2",
            "sub/deeper/big.bin:0:1024",
            "sub/deeper/big.bin:1024:2048",
            "sub/deeper/big.bin:2048:3000"
        ]
    );
    assert!(manifest.resources.iter().all(|r| r.algorithm == "sha256-sharded-1024"));
    // A shard's digest is the plain SHA-256 of its bytes.
    let a = manifest.resources.iter().find(|r| r.name == "a.txt:0:5").unwrap();
    assert_eq!(
        hex::encode(&a.digest),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}

#[test]
fn blake3_matches_the_reference_and_is_thread_independent() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    // Big enough to take the multi-threaded BLAKE3 path.
    fs::write(m.join("large.bin"), vec![0xA5u8; 20 << 20]).unwrap();
    let b = hash_model(&m, &opts(Method::Files, HashAlgorithm::Blake3), None).unwrap();
    let dotfile = b.resources.iter().find(|r| r.name == ".dotfile").unwrap();
    // Recorded from model_signing 1.1.1 with hashing_algorithm="blake3".
    assert_eq!(
        hex::encode(&dotfile.digest),
        "3f2446562e758157e38542ed7b227a8c83c2a9bd03d8d37cf013fa29ef93d878"
    );
    let large = b.resources.iter().find(|r| r.name == "large.bin").unwrap();
    assert_eq!(large.digest, blake3::hash(&vec![0xA5u8; 20 << 20]).as_bytes().to_vec());
}

#[test]
fn single_file_model_is_named_dot() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("single.bin");
    fs::write(&f, "abc").unwrap();
    let m = hash_model(&f, &files(), None).unwrap();
    assert_eq!(m.model_name, "single.bin");
    assert_eq!(m.resources.len(), 1);
    assert_eq!(m.resources[0].name, ".");
    // Recorded from model_signing 1.1.1 on the same file.
    assert_eq!(
        hex::encode(m.root_digest()),
        "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"
    );
}

#[test]
fn symlinks_are_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    symlink("a.txt", m.join("link")).unwrap();
    match hash_model(&m, &files(), None) {
        Err(Error::Tree {
            path,
            reason: TreeProblem::SymlinkNotAllowed,
        }) => assert_eq!(path, "link"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn allowed_symlinks_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    fs::write(dir.path().join("outside"), "secret").unwrap();
    let mut allow = files();
    allow.allow_symlinks = true;

    symlink("a.txt", m.join("inside")).unwrap();
    let manifest = hash_model(&m, &allow, None).unwrap();
    let a = manifest.resources.iter().find(|r| r.name == "a.txt").unwrap();
    let inside = manifest.resources.iter().find(|r| r.name == "inside").unwrap();
    assert_eq!(a.digest, inside.digest);

    symlink("../outside", m.join("escape")).unwrap();
    match hash_model(&m, &allow, None) {
        Err(Error::Tree {
            path,
            reason: TreeProblem::SymlinkEscapes,
        }) => assert_eq!(path, "escape"),
        other => panic!("{other:?}"),
    }
    fs::remove_file(m.join("escape")).unwrap();

    symlink(dir.path().join("outside"), m.join("absolute")).unwrap();
    assert!(matches!(
        hash_model(&m, &allow, None),
        Err(Error::Tree {
            reason: TreeProblem::SymlinkEscapes,
            ..
        })
    ));
    fs::remove_file(m.join("absolute")).unwrap();

    symlink("..", m.join("sub/up")).unwrap();
    assert!(matches!(
        hash_model(&m, &allow, None),
        Err(Error::Tree {
            reason: TreeProblem::SymlinkCycle,
            ..
        })
    ));
    fs::remove_file(m.join("sub/up")).unwrap();

    symlink("loop2", m.join("loop1")).unwrap();
    symlink("loop1", m.join("loop2")).unwrap();
    assert!(matches!(
        hash_model(&m, &allow, None),
        Err(Error::Tree {
            reason: TreeProblem::SymlinkCycle,
            ..
        })
    ));
}

#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    let _sock = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
    assert!(matches!(
        hash_model(&m, &files(), None),
        Err(Error::Tree {
            reason: TreeProblem::SpecialFile,
            ..
        })
    ));
}

#[test]
fn ignore_paths_and_empty_models() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    reference_tree(&m);
    let mut o = files();
    o.ignore.push(IgnorePath::parse("sub").unwrap());
    o.ignore.push(IgnorePath::parse("dir with space/naïve ü.txt").unwrap());
    let manifest = hash_model(&m, &o, None).unwrap();
    assert_eq!(manifest.resources.len(), 4);
    assert!(manifest.serialization.ignore_paths.contains(&"sub".to_owned()));

    let empty = dir.path().join("empty");
    fs::create_dir_all(empty.join(".git")).unwrap();
    fs::write(empty.join(".git/HEAD"), "x").unwrap();
    let manifest = hash_model(&empty, &files(), None).unwrap();
    assert!(manifest.resources.is_empty());
    assert!(matches!(
        sign_manifest(&manifest, &Signer::Key(key())),
        Err(Error::EmptyModel)
    ));
}

fn signed_model(dir: &Path, method: Method) -> (std::path::PathBuf, Vec<u8>) {
    let m = dir.join("m");
    reference_tree(&m);
    let manifest = hash_model(&m, &opts(method, HashAlgorithm::Sha256), None).unwrap();
    (m, sign_manifest(&manifest, &Signer::Key(key())).unwrap())
}

fn verify(m: &Path, bundle: &[u8]) -> Result<modelgate_oms::Verified, Error> {
    verify_model(
        m,
        bundle,
        &Trust::PublicKey(key().public_key()),
        &VerifyOptions::default(),
        None,
    )
}

#[test]
fn tampering_is_reported_by_file_name() {
    for method in [Method::Files, Method::Shards { shard_size: 1024 }] {
        let dir = tempfile::tempdir().unwrap();
        let (m, bundle) = signed_model(dir.path(), method);
        let ok = verify(&m, &bundle).unwrap();
        assert_eq!(ok.manifest.resources.len(), if method == Method::Files { 6 } else { 7 });

        // One changed byte in the middle of the last shard.
        let big = m.join("sub/deeper/big.bin");
        let mut bytes = fs::read(&big).unwrap();
        bytes[2500] ^= 1;
        fs::write(&big, &bytes).unwrap();
        fs::write(m.join("extra.bin"), "new").unwrap();
        fs::remove_file(m.join("a.txt")).unwrap();
        match verify(&m, &bundle) {
            Err(Error::Mismatch(d)) => {
                assert_eq!(d.changed, ["sub/deeper/big.bin"], "{method:?}");
                assert_eq!(d.extra, ["extra.bin"]);
                assert_eq!(d.missing, ["a.txt"]);
            }
            other => panic!("{method:?}: {other:?}"),
        }
        // Opting out of unsigned files forgives the extra file only.
        let lax = VerifyOptions {
            ignore_unsigned_files: true,
            ..Default::default()
        };
        match verify_model(&m, &bundle, &Trust::PublicKey(key().public_key()), &lax, None) {
            Err(Error::Mismatch(d)) => {
                assert!(d.extra.is_empty());
                assert_eq!(d.missing, ["a.txt"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn truncated_file_is_changed_under_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (m, bundle) = signed_model(dir.path(), Method::Shards { shard_size: 1024 });
    fs::write(m.join("sub/deeper/big.bin"), "x".repeat(1500)).unwrap();
    match verify(&m, &bundle) {
        Err(Error::Mismatch(d)) => {
            assert_eq!(d.changed, ["sub/deeper/big.bin"]);
            assert!(d.missing.is_empty() && d.extra.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_key_and_corrupted_bundle_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (m, bundle) = signed_model(dir.path(), Method::Files);
    let other = PrivateKey::P384(p384::ecdsa::SigningKey::from_slice(&[3u8; 48]).unwrap());
    let err = verify_model(
        &m,
        &bundle,
        &Trust::PublicKey(other.public_key()),
        &VerifyOptions::default(),
        None,
    )
    .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
    // Flip one character of the signature inside the JSON.
    let text = String::from_utf8(bundle.clone()).unwrap();
    let at = text.find("\"sig\":\"").unwrap() + 10;
    let mut bytes = bundle.clone();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let err = verify(&m, &bytes).unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
}

#[test]
fn signing_twice_gives_the_same_payload_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (m, first) = signed_model(dir.path(), Method::Files);
    let manifest = hash_model(&m, &files(), None).unwrap();
    let second = sign_manifest(&manifest, &Signer::Key(key())).unwrap();
    assert_eq!(first, second);
}
