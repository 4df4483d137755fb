//! Notes, checkpoints, cosignatures, witness policies and tlog-proofs: what
//! is accepted, and that each malformed or forged input is refused with the
//! right kind of error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_tlog::*;

const ORIGIN: &str = "log.example/governance";

fn log() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[1; 32]).unwrap()
}

fn witness(i: u8) -> SignerKey {
    SignerKey::from_seed(&format!("witness{i}.example"), KeyType::CosignatureV1, &[10 + i; 32]).unwrap()
}

fn checkpoint(size: u64) -> (MemoryTree, Checkpoint) {
    let mut t = MemoryTree::new();
    for i in 0..size {
        t.append(leaf_hash(format!("entry {i}").as_bytes()));
    }
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: t.root(),
        extensions: vec![],
    };
    (t, cp)
}

fn cosigned(cp: &Checkpoint, witnesses: &[u8], ts: u64) -> Note {
    let mut note = cp.sign(&log()).unwrap();
    for &w in witnesses {
        note.add_signature(witness(w).cosign(note.text(), ts).unwrap()).unwrap();
    }
    note
}

#[test]
fn malformed_notes_are_rejected() {
    let good = cosigned(&checkpoint(3).1, &[], 0).to_bytes();
    Note::parse(&good).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no blank line", text.replacen("\n\n", "\n", 1).into_bytes()),
        (
            "no signatures",
            text.as_bytes()[..text.find("\n\n").unwrap() + 2].to_vec(),
        ),
        ("no final newline", good[..good.len() - 1].to_vec()),
        ("hyphen not em dash", text.replace('\u{2014}', "-").into_bytes()),
        ("tab", text.replacen(ORIGIN, "log.example/\tgov", 1).into_bytes()),
        ("carriage return", text.replace('\n', "\r\n").into_bytes()),
        ("bad utf-8", [&good[..5], &[0xff], &good[5..]].concat()),
        ("signature not base64", text.replace("=\n", "!\n").into_bytes()),
        ("short signature", format!("{}\n\n\u{2014} a AAAA\n", "x").into_bytes()),
        (
            "name with plus",
            format!("{}\n\n\u{2014} a+b AAAAAAAA\n", "x").into_bytes(),
        ),
        ("empty name", format!("{}\n\n\u{2014}  AAAAAAAA\n", "x").into_bytes()),
        ("blank line in signatures", format!("{text}\n").into_bytes()),
        ("too large", vec![b'a'; MAX_NOTE_BYTES + 1]),
    ];
    for (what, bytes) in cases {
        let r = Note::parse(&bytes);
        assert!(matches!(r, Err(Error::MalformedNote(_))), "{what}: {r:?}");
    }
    // The signature bound: exactly MAX_SIGNATURES lines parse, one more does not.
    let line = witness(1).cosign("x\n", 1).unwrap().line();
    let at_limit = format!("x\n\n{}", line.repeat(MAX_SIGNATURES));
    assert_eq!(
        Note::parse(at_limit.as_bytes()).unwrap().signatures().len(),
        MAX_SIGNATURES
    );
    let over = format!("x\n\n{}", line.repeat(MAX_SIGNATURES + 1));
    assert!(matches!(Note::parse(over.as_bytes()), Err(Error::MalformedNote(_))));
}

#[test]
fn notes_with_blank_lines_in_the_text_split_at_the_last_one() {
    let key = log();
    let text = "para one\n\npara two\n";
    let mut note = Note::new(text).unwrap();
    note.add_signature(key.sign(text).unwrap()).unwrap();
    let parsed = Note::parse(&note.to_bytes()).unwrap();
    assert_eq!(parsed.text(), text);
    parsed.verify(&[key.verifier()]).unwrap();
}

#[test]
fn unknown_keys_are_ignored_but_never_trusted() {
    let (_, cp) = checkpoint(4);
    let note = cosigned(&cp, &[1, 2], 100);
    let bytes = note.to_bytes();
    // Same name, other key (so other id): unknown, ignored.
    let impostor = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[99; 32]).unwrap();
    assert_eq!(
        Note::parse(&bytes).unwrap().verify(&[impostor.verifier()]),
        Err(Error::UnverifiedNote)
    );
    // A known key and unknown witnesses: verified, witnesses listed as unknown.
    let ok = Note::parse(&bytes).unwrap().verify(&[log().verifier()]).unwrap();
    assert_eq!((ok.verified.len(), ok.unknown.len()), (1, 2));
    // A signature that claims a known name and id but fails: whole note rejected.
    let mut forged = Note::new(note.text()).unwrap();
    let mut sig = log().sign(note.text()).unwrap();
    sig.sig[0] ^= 1;
    forged.add_signature(sig).unwrap();
    let r = Note::parse(&forged.to_bytes()).unwrap().verify(&[log().verifier()]);
    assert!(matches!(r, Err(Error::BadSignature { .. })), "{r:?}");
    // The same known key twice: refused.
    let line = log().sign(note.text()).unwrap().line();
    let twice = format!("{}\n{line}{line}", note.text());
    let r = Note::parse(twice.as_bytes()).unwrap().verify(&[log().verifier()]);
    assert!(matches!(r, Err(Error::DuplicateSignature { .. })), "{r:?}");
}

#[test]
fn checkpoint_text_round_trips_and_malformed_ones_are_rejected() {
    let (_, mut cp) = checkpoint(7);
    cp.extensions = vec!["ext one".into(), "ext two".into()];
    assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    let root = cp.to_text().lines().nth(2).unwrap().to_owned();
    for bad in [
        String::new(),
        "\n".into(),
        format!("{ORIGIN}\n"),
        format!("{ORIGIN}\n7\n"),
        format!("{ORIGIN}\n07\n{root}\n"),
        format!("{ORIGIN}\n+7\n{root}\n"),
        format!("{ORIGIN}\n-7\n{root}\n"),
        format!("{ORIGIN}\n 7\n{root}\n"),
        format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
        format!("{ORIGIN}\n7\n{}\n", &root[..root.len() - 4]),
        format!("{ORIGIN}\n7\n{}\n", root.trim_end_matches('=')),
        format!("{ORIGIN}\n7\n{root}"),
        format!("{ORIGIN}\n7\n{root}\n\next\n"),
        format!("\n7\n{root}\n"),
    ] {
        assert!(
            matches!(Checkpoint::parse(&bad), Err(Error::MalformedCheckpoint(_))),
            "{bad:?}"
        );
    }
    assert_eq!(Checkpoint::parse(&format!("{ORIGIN}\n0\n{root}\n")).unwrap().size, 0);
}

#[test]
fn cosignatures_sign_and_verify_with_their_timestamps() {
    let (_, cp) = checkpoint(9);
    let note = cosigned(&cp, &[1], 1_679_315_147);
    let sig = &note.signatures()[1];
    assert_eq!(sig.cosignature_timestamp(), Some(1_679_315_147));
    let w = witness(1).verifier();
    assert_eq!(w.key_type(), KeyType::CosignatureV1);
    assert_eq!(w.verify(note.text(), &sig.sig), Some(Some(1_679_315_147)));
    // A cosignature with its timestamp edited no longer verifies.
    let mut edited = sig.sig.clone();
    edited[7] ^= 1;
    assert_eq!(w.verify(note.text(), &edited), None);
    // Cosignature keys and note keys are not interchangeable.
    assert!(witness(1).sign(note.text()).is_err());
    assert!(log().cosign(note.text(), 1).is_err());
    assert!(witness(1).cosign(note.text(), 1 << 63).is_err());
    // The verifier key string carries the 0x04 type and round-trips.
    let s = w.to_string();
    assert_eq!(VerifierKey::parse(&s).unwrap(), w);
}

#[test]
fn witness_policy_needs_the_log_and_k_of_n_witnesses() {
    let (_, cp) = checkpoint(12);
    let ws: Vec<VerifierKey> = (1..=3).map(|i| witness(i).verifier()).collect();
    let policy = CheckpointPolicy::new(log().verifier(), ws.clone(), 2).unwrap();

    let two = cosigned(&cp, &[1, 3], 500).to_bytes();
    let v = policy.verify(&two).unwrap();
    assert_eq!(v.checkpoint, cp);
    assert_eq!(
        v.witnesses,
        vec![
            ("witness1.example".to_string(), Some(500)),
            ("witness3.example".to_string(), Some(500))
        ]
    );

    let one = cosigned(&cp, &[2], 500).to_bytes();
    assert!(matches!(
        policy.verify(&one),
        Err(Error::QuorumNotMet { got: 1, want: 2, .. })
    ));

    // A witness outside the policy does not count.
    let stranger = SignerKey::from_seed("witness9.example", KeyType::CosignatureV1, &[77; 32]).unwrap();
    let mut note = cosigned(&cp, &[1], 500);
    note.add_signature(stranger.cosign(note.text(), 500).unwrap()).unwrap();
    assert!(matches!(
        policy.verify(&note.to_bytes()),
        Err(Error::QuorumNotMet { got: 1, .. })
    ));

    // Witnesses alone, without the log's signature: refused.
    let mut unsigned = Note::new(&cp.to_text()).unwrap();
    for i in 1..=3 {
        unsigned
            .add_signature(witness(i).cosign(&cp.to_text(), 1).unwrap())
            .unwrap();
    }
    assert!(matches!(
        policy.verify(&unsigned.to_bytes()),
        Err(Error::MissingLogSignature(_))
    ));

    // Another origin signed by a key of the same name is refused.
    let other = Checkpoint {
        origin: "other.example/log".into(),
        ..cp.clone()
    };
    let key = SignerKey::from_seed("other.example/log", KeyType::Ed25519, &[1; 32]).unwrap();
    let p2 = CheckpointPolicy::new(log().verifier(), vec![], 0).unwrap();
    let r = p2.verify(&other.sign(&key).unwrap().to_bytes());
    assert!(r.is_err(), "{r:?}");

    // Impossible policies are configuration errors.
    assert!(matches!(
        CheckpointPolicy::new(log().verifier(), ws.clone(), 4),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        CheckpointPolicy::new(witness(1).verifier(), vec![], 0),
        Err(Error::Config(_))
    ));
    let dup = vec![ws[0].clone(), ws[0].clone()];
    assert!(matches!(
        CheckpointPolicy::new(log().verifier(), dup, 1),
        Err(Error::Config(_))
    ));
}

#[test]
fn signing_refuses_a_key_named_other_than_the_origin() {
    let (_, cp) = checkpoint(1);
    let key = SignerKey::from_seed("someone.else", KeyType::Ed25519, &[1; 32]).unwrap();
    assert!(matches!(cp.sign(&key), Err(Error::Config(_))));
    let bad = Checkpoint {
        origin: "two\nlines".into(),
        ..cp
    };
    assert!(bad.sign(&log()).is_err());
}

#[test]
fn signer_key_strings_round_trip_and_reject_mismatches() {
    let k = log();
    let s = k.to_private_string();
    assert!(s.starts_with(&format!("PRIVATE+KEY+{ORIGIN}+")));
    assert_eq!(SignerKey::parse(&s).unwrap().verifier(), k.verifier());
    assert!(!format!("{k:?}").contains(&s[s.len() - 20..]), "Debug leaks the key");
    let mut wrong_id = s.clone().into_bytes();
    let pos = s.find('+').unwrap() + 5 + ORIGIN.len() + 1 + 3;
    wrong_id[pos] = if wrong_id[pos] == b'0' { b'1' } else { b'0' };
    assert!(SignerKey::parse(std::str::from_utf8(&wrong_id).unwrap()).is_err());
    assert!(SignerKey::parse(&s.replacen("PRIVATE+KEY+", "PRIVATE+", 1)).is_err());
    assert!(SignerKey::parse(&k.verifier().to_string()).is_err());
}

#[test]
fn tlog_proofs_round_trip_and_malformed_ones_are_rejected() {
    let (t, cp) = checkpoint(100);
    let note = cosigned(&cp, &[1], 42).to_bytes();
    let proof = TlogProof {
        extra: Some(b"hello".to_vec()),
        index: 37,
        hashes: inclusion_proof(37, 100, &t).unwrap(),
        checkpoint: note.clone(),
    };
    let text = proof.to_bytes();
    let s = String::from_utf8(text.clone()).unwrap();
    assert!(s.starts_with("c2sp.org/tlog-proof@v1\nextra aGVsbG8=\nindex 37\n"));
    assert_eq!(TlogProof::parse(&text).unwrap(), proof);
    let policy = CheckpointPolicy::new(log().verifier(), vec![witness(1).verifier()], 1).unwrap();
    let ok = TlogProof::parse(&text)
        .unwrap()
        .verify(&leaf_hash(b"entry 37"), &policy)
        .unwrap();
    assert_eq!(
        ok.checkpoint.witnesses,
        vec![("witness1.example".to_string(), Some(42))]
    );
    assert!(matches!(
        TlogProof::parse(&text)
            .unwrap()
            .verify(&leaf_hash(b"entry 38"), &policy),
        Err(Error::Proof(ProofError::RootMismatch))
    ));

    let first_hash = s.lines().nth(3).unwrap().to_owned();
    for (what, bad) in [
        ("header", s.replacen("tlog-proof@v1", "tlog-proof@v2", 1)),
        ("index leading zero", s.replacen("index 37", "index 037", 1)),
        ("index missing", s.replacen("index 37\n", "", 1)),
        ("index sign", s.replacen("index 37", "index +37", 1)),
        ("extra empty", s.replacen("extra aGVsbG8=", "extra ", 1)),
        ("extra not base64", s.replacen("extra aGVsbG8=", "extra a", 1)),
        ("short hash", s.replacen(&first_hash, &first_hash[4..], 1)),
        ("no blank line", s.replacen("\n\n", "\n", 1)),
        (
            "too many hashes",
            s.replacen(&first_hash, &format!("{first_hash}\n").repeat(65), 1),
        ),
    ] {
        let r = TlogProof::parse(bad.as_bytes());
        assert!(matches!(r, Err(Error::MalformedProof(_))), "{what}: {r:?}");
    }
    // Extra data is unauthenticated: changing it does not change validity.
    let no_extra = TlogProof { extra: None, ..proof };
    no_extra.verify(&leaf_hash(b"entry 37"), &policy).unwrap();
}

#[test]
fn errors_tell_malformed_input_from_failed_verification() {
    assert!(Error::MalformedNote("x".into()).is_malformed());
    assert!(Error::MalformedProof("x".into()).is_malformed());
    assert!(!Error::UnverifiedNote.is_malformed());
    assert!(!Error::Proof(ProofError::RootMismatch).is_malformed());
    assert!(!Error::QuorumNotMet {
        got: 0,
        want: 1,
        signed: vec![]
    }
    .is_malformed());
}
