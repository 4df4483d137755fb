//! `modelgate log …` as an auditor uses it: real binary, real files, exit
//! codes 0 (valid) / 1 (invalid, with the reason) / 2 (bad input).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{mg, s, stderr, stdout};
use modelgate_tlog::*;

mod common;

/// Run `modelgate log …` from one line (temporary paths hold no spaces).
fn log_cmd(line: &str) -> Output {
    let mut args = vec!["log"];
    args.extend(line.split(' '));
    mg(&args)
}

struct Log {
    dir: tempfile::TempDir,
    vkey: PathBuf,
    witness_vkey: PathBuf,
    proof: PathBuf,
    checkpoint: PathBuf,
    entry: PathBuf,
    other_entry: PathBuf,
}

/// A log of 20 entries whose keys come from `modelgate log keygen`, a
/// checkpoint cosigned by one witness, and a proof for entry 5.
fn log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("log");
    let o = log_cmd(&format!("keygen audit.example/log --out {}", s(&prefix)));
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    let vkey = dir.path().join("log.vkey");
    assert_eq!(printed, fs::read_to_string(&vkey).unwrap());
    let mode = fs::metadata(dir.path().join("log.skey")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let o = log_cmd(&format!(
        "keygen witness.example --cosigner --out {}",
        s(&dir.path().join("w"))
    ));
    assert!(o.status.success(), "{}", stderr(&o));

    let log_key = SignerKey::parse(fs::read_to_string(dir.path().join("log.skey")).unwrap().trim()).unwrap();
    let w_key = SignerKey::parse(fs::read_to_string(dir.path().join("w.skey")).unwrap().trim()).unwrap();
    assert_eq!(w_key.key_type(), KeyType::CosignatureV1);

    let mut tree = MemoryTree::new();
    for i in 0..20 {
        tree.append(leaf_hash(format!("entry {i}").as_bytes()));
    }
    let cp = Checkpoint {
        origin: "audit.example/log".into(),
        size: 20,
        root: tree.root(),
        extensions: vec![],
    };
    let mut note = cp.sign(&log_key).unwrap();
    note.add_signature(w_key.cosign(note.text(), 1_679_315_147).unwrap())
        .unwrap();
    let checkpoint = dir.path().join("checkpoint");
    fs::write(&checkpoint, note.to_bytes()).unwrap();
    let proof = TlogProof {
        extra: None,
        index: 5,
        hashes: inclusion_proof(5, 20, &tree).unwrap(),
        checkpoint: note.to_bytes(),
    };
    let proof_path = dir.path().join("entry5.tlog-proof");
    fs::write(&proof_path, proof.to_bytes()).unwrap();
    let entry = dir.path().join("entry5");
    fs::write(&entry, "entry 5").unwrap();
    let other_entry = dir.path().join("entry6");
    fs::write(&other_entry, "entry 6").unwrap();
    Log {
        witness_vkey: dir.path().join("w.vkey"),
        dir,
        vkey,
        proof: proof_path,
        checkpoint,
        entry,
        other_entry,
    }
}

#[test]
fn a_valid_proof_verifies_with_nothing_but_the_keys() {
    let l = log();
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --witness {} --entry {}",
        s(&l.proof),
        s(&l.vkey),
        s(&l.witness_vkey),
        s(&l.entry)
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("proof: valid") && text.contains("index: 5") && text.contains("size: 20"),
        "{text}"
    );
    assert!(
        text.contains("cosigned: witness.example at 2023-03-20T12:25:47Z (1679315147)"),
        "{text}"
    );

    // The vkey as a string instead of a file, and the proof on standard input.
    let vkey = fs::read_to_string(&l.vkey).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "log",
            "verify-proof",
            "-",
            "--vkey",
            vkey.trim(),
            "--entry",
            s(&l.entry),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(&l.proof).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // --leaf-hash instead of the entry.
    let leaf: String = leaf_hash(b"entry 5").iter().map(|b| format!("{b:02x}")).collect();
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --leaf-hash {}",
        s(&l.proof),
        s(&l.vkey),
        &leaf
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn invalid_proofs_exit_1_with_the_reason() {
    let l = log();
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --entry {}",
        s(&l.proof),
        s(&l.vkey),
        s(&l.other_entry)
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not lead to the expected root"),
        "{}",
        stderr(&o)
    );

    // A well-formed key of another log.
    let other = l.dir.path().join("other");
    assert!(log_cmd(&format!("keygen audit.example/log --out {}", s(&other)))
        .status
        .success());
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --entry {}",
        s(&l.proof),
        s(&other.with_extension("vkey")),
        s(&l.entry)
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not signed by the log key"), "{}", stderr(&o));

    // The checkpoint's signature edited by one character.
    let text = fs::read_to_string(&l.proof).unwrap();
    let pos = text.find("\u{2014} audit.example/log ").unwrap() + "\u{2014} audit.example/log ".len() + 10;
    let mut bytes = text.into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    let forged = l.dir.path().join("forged.tlog-proof");
    fs::write(&forged, &bytes).unwrap();
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --entry {}",
        s(&forged),
        s(&l.vkey),
        s(&l.entry)
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));

    // A witness that did not cosign.
    let absent = l.dir.path().join("absent");
    assert!(
        log_cmd(&format!("keygen absent.example --cosigner --out {}", s(&absent)))
            .status
            .success()
    );
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --witness {} --witness {} --entry {}",
        s(&l.proof),
        s(&l.vkey),
        s(&l.witness_vkey),
        s(&absent.with_extension("vkey")),
        s(&l.entry)
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("quorum not met: 1 of the required 2"),
        "{}",
        stderr(&o)
    );
    // ... and with --quorum 1 the same proof is valid.
    let o = log_cmd(&format!(
        "verify-proof {} --vkey {} --witness {} --witness {} --quorum 1 --entry {}",
        s(&l.proof),
        s(&l.vkey),
        s(&l.witness_vkey),
        s(&absent.with_extension("vkey")),
        s(&l.entry)
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_input_exits_2_and_names_the_problem() {
    let l = log();
    let truncated = l.dir.path().join("truncated");
    let text = fs::read(&l.proof).unwrap();
    fs::write(&truncated, &text[..40]).unwrap();
    let (proof, vkey, entry) = (s(&l.proof), s(&l.vkey), s(&l.entry));
    let cp = s(&l.checkpoint);
    let x = l.dir.path().join("x");
    let existing = l.dir.path().join("log");
    let bad_name = "bad\u{a0}name"; // a no-break space: Unicode whitespace is not allowed in key names
                                    // Temporary paths hold no spaces, so each command is written as one line.
    for (cmd, needle) in [
        (
            format!("verify-proof {} --vkey {vkey} --entry {entry}", s(&truncated)),
            "malformed proof",
        ),
        (
            format!("verify-proof {proof} --vkey nonsense+key --entry {entry}"),
            "neither a verifier key nor a file",
        ),
        (format!("verify-proof {proof} --vkey {vkey}"), "--entry"),
        (
            format!("verify-proof {proof} --vkey {vkey} --leaf-hash abc"),
            "64 hex digits",
        ),
        (
            format!("verify-proof /nonexistent/p --vkey {vkey} --entry {entry}"),
            "couldn't read proof",
        ),
        (
            format!("verify-checkpoint {cp} --vkey {vkey} --quorum 1"),
            "quorum 1 exceeds",
        ),
        (format!("verify-checkpoint {proof} --vkey {vkey}"), "malformed"),
        (format!("keygen {bad_name} --out {}", s(&x)), "invalid key name"),
        (format!("keygen audit.example/log --out {}", s(&existing)), "exists"),
    ] {
        let mut args = vec!["log"];
        args.extend(cmd.split(' '));
        let o = mg(&args);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{cmd}: {}", stderr(&o));
    }
}

#[test]
fn checkpoints_verify_and_report_their_cosignatures() {
    let l = log();
    let o = log_cmd(&format!(
        "verify-checkpoint {} --vkey {} --witness {}",
        s(&l.checkpoint),
        s(&l.vkey),
        s(&l.witness_vkey)
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("checkpoint: valid\norigin: audit.example/log\nsize: 20\nroot: "),
        "{text}"
    );
    assert!(
        text.contains("cosigned: witness.example at 2023-03-20T12:25:47Z"),
        "{text}"
    );

    // The tree size changed in the signed text: the log's signature fails.
    let forged = fs::read_to_string(&l.checkpoint)
        .unwrap()
        .replacen("\n20\n", "\n21\n", 1);
    let path = l.dir.path().join("forged-checkpoint");
    fs::write(&path, forged).unwrap();
    let o = log_cmd(&format!("verify-checkpoint {} --vkey {}", s(&path), s(&l.vkey)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
}

#[test]
fn audit_reports_an_intact_store_and_the_first_discrepancy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let key = SignerKey::from_seed("audit.example/store", KeyType::Ed25519, &[8; 32]).unwrap();
    let mut log = modelgate_store::Log::open(modelgate_store::SqliteStore::open(&db).unwrap(), key.clone()).unwrap();
    for b in 0..5u32 {
        let es: Vec<Vec<u8>> = (0..20u32)
            .map(|i| format!("entry-{b:02}-{i:02}-tamper-me").into_bytes())
            .collect();
        log.append(&es).unwrap();
    }
    log.close().unwrap();
    let vkey = key.verifier().to_string();
    let o = log_cmd(&format!("audit {} --vkey {}", s(&db), &vkey));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("store: intact\nentries: 100\n"), "{}", stdout(&o));

    // Another key: every checkpoint fails.
    let other = SignerKey::from_seed("audit.example/store", KeyType::Ed25519, &[9; 32]).unwrap();
    let o = log_cmd(&format!("audit {} --vkey {}", s(&db), &other.verifier().to_string()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("checkpoint for size 20"), "{}", stderr(&o));

    // One byte of one entry changed in the file.
    let mut bytes = fs::read(&db).unwrap();
    let needle = b"entry-03-07-tamper-me";
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty());
    for a in at {
        bytes[a + 6] ^= 1;
    }
    fs::write(&db, bytes).unwrap();
    let o = log_cmd(&format!("audit {} --vkey {}", s(&db), &vkey));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("node (level 0, index 67)"), "{}", stderr(&o));

    let o = log_cmd(&format!("audit {} --vkey {}", s(&dir.path().join("missing.db")), &vkey));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
