//! Bundles as the Go client (`model-transparency-go`, signing through sigstore-go) writes
//! them, verified here.
//!
//! The Go client cannot be built on this machine (it needs a Go toolchain newer than
//! Debian's and module downloads), so these bundles are assembled by this test following
//! its source (securesign/model-transparency-go: `pkg/modelartifact/payload.go`,
//! `pkg/signing/key_algorithm.go`, `key/keypair.go`, `certificate/cert_signer.go`,
//! `helpers.go`), in each point where it differs from the Python reference:
//!
//! - the statement is protojson: fields in proto order, the predicate's keys sorted
//!   (a `Struct` is a map), `shard_size` a JSON number from a float64, `ignore_paths`
//!   always present; protojson may put a space after a colon (its deliberate
//!   instability), so one case does;
//! - the bundle is protojson too: no `tlogEntries`, no empty `keyid`;
//! - the key hint is hex SHA-256 of the key's PEM;
//! - key types beyond ECDSA: RSA PKCS#1 v1.5 with SHA-256, Ed25519 pre-hashed (Ed25519ph);
//! - certificates: the leaf alone as `certificate` when no chain is given, else an
//!   `x509CertificateChain` written by Go's `json.MarshalIndent` (sorted keys, two spaces).
//!
//! Keys, certificates and every signature except Ed25519ph are made by the `openssl`
//! CLI, so the verifier is checked against an independent signer; Ed25519ph (which
//! Debian's OpenSSL 3.0 cannot make) comes from ed25519-dalek, and the unit tests pin
//! our Ed25519ph verification to RFC 8032's test vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use modelgate_oms::{pae, verify_model, Error, PublicKey, Trust, VerifyOptions};
use sha2::{Digest as _, Sha256};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// A small model: nested directory, an empty file.
fn model(root: &Path) -> std::path::PathBuf {
    let m = root.join("model");
    std::fs::create_dir_all(m.join("dir")).unwrap();
    std::fs::write(m.join("a.bin"), b"weights, weights, weights").unwrap();
    std::fs::write(m.join("dir/b.txt"), b"tokenizer").unwrap();
    std::fs::write(m.join("empty"), b"").unwrap();
    m
}

/// `(name, sha256 hex)` of every file (files method) or shard (shards method), computed
/// here from the bytes, in Go's order (byte-wise sorted names). An empty file has no
/// shard (Go's `hashFilesWithShards`, the Python reference and OMS §6.3.2 agree).
fn resources(m: &Path, shard: Option<usize>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["a.bin", "dir/b.txt", "empty"] {
        let bytes = std::fs::read(m.join(name)).unwrap();
        if shard.is_some() && bytes.is_empty() {
            continue;
        }
        match shard {
            None => out.push((name.to_owned(), hex::encode(Sha256::digest(&bytes)))),
            Some(size) => {
                let mut start = 0;
                loop {
                    let end = (start + size).min(bytes.len());
                    out.push((
                        format!("{name}:{start}:{end}"),
                        hex::encode(Sha256::digest(&bytes[start..end])),
                    ));
                    start = end;
                    if start >= bytes.len() {
                        break;
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// The in-toto statement as Go's `MarshalPayload` writes it through protojson.
fn go_payload(m: &Path, shard: Option<usize>, spaced: bool) -> Vec<u8> {
    let res = resources(m, shard);
    let mut root = Sha256::new();
    for (_, d) in &res {
        root.update(hex::decode(d).unwrap());
    }
    let root = hex::encode(root.finalize());
    // A shard's digest is named by Go's `ShardedFileHasher.DigestName`.
    let algorithm = shard.map_or("sha256".to_owned(), |s| format!("sha256-sharded-{s}"));
    let resources: Vec<String> = res
        .iter()
        .map(|(n, d)| format!(r#"{{"algorithm":"{algorithm}","digest":"{d}","name":"{n}"}}"#))
        .collect();
    let serialization = match shard {
        None => {
            r#"{"allow_symlinks":false,"hash_type":"sha256","ignore_paths":["model.sig"],"method":"files"}"#.to_owned()
        }
        Some(s) => format!(
            r#"{{"allow_symlinks":false,"hash_type":"sha256","ignore_paths":["model.sig"],"method":"shards","shard_size":{s}}}"#
        ),
    };
    let text = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"model","digest":{{"sha256":"{root}"}}}}],"predicateType":"https://model_signing/signature/v1.0","predicate":{{"resources":[{}],"serialization":{serialization}}}}}"#,
        resources.join(",")
    );
    if spaced {
        text.replace("\":", "\": ").into_bytes()
    } else {
        text.into_bytes()
    }
}

/// sigstore-go's protojson bundle for a bare key.
fn go_key_bundle(payload: &[u8], sig: &[u8], pub_pem: &[u8]) -> Vec<u8> {
    let hint = hex::encode(Sha256::digest(pub_pem));
    format!(
        r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"publicKey":{{"hint":"{hint}"}}}},"dsseEnvelope":{{"payload":"{}","payloadType":"application/vnd.in-toto+json","signatures":[{{"sig":"{}"}}]}}}}"#,
        STANDARD.encode(payload),
        STANDARD.encode(sig)
    )
    .into_bytes()
}

/// sigstore-go's protojson bundle for a certificate without a chain: the leaf alone.
fn go_leaf_bundle(payload: &[u8], sig: &[u8], leaf_der: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"certificate":{{"rawBytes":"{}"}}}},"dsseEnvelope":{{"payload":"{}","payloadType":"application/vnd.in-toto+json","signatures":[{{"sig":"{}"}}]}}}}"#,
        STANDARD.encode(leaf_der),
        STANDARD.encode(payload),
        STANDARD.encode(sig)
    )
    .into_bytes()
}

/// The same bundle after `EmbedCertChainInBundleFile`: Go's `json.MarshalIndent` of
/// the decoded map (sorted keys, two-space indent), the chain behind the leaf.
fn go_chain_bundle(payload: &[u8], sig: &[u8], chain_der: &[Vec<u8>]) -> Vec<u8> {
    let certs: Vec<String> = chain_der
        .iter()
        .map(|c| {
            format!(
                "        {{\n          \"rawBytes\": \"{}\"\n        }}",
                STANDARD.encode(c)
            )
        })
        .collect();
    format!(
        "{{\n  \"dsseEnvelope\": {{\n    \"payload\": \"{}\",\n    \"payloadType\": \"application/vnd.in-toto+json\",\n    \"signatures\": [\n      {{\n        \"sig\": \"{}\"\n      }}\n    ]\n  }},\n  \"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\",\n  \"verificationMaterial\": {{\n    \"x509CertificateChain\": {{\n      \"certificates\": [\n{}\n      ]\n    }}\n  }}\n}}",
        STANDARD.encode(payload),
        STANDARD.encode(sig),
        certs.join(",\n")
    )
    .into_bytes()
}

fn der_of_pem(dir: &Path, pem: &str) -> Vec<u8> {
    let der = format!("{pem}.der");
    sh(dir, &format!("openssl x509 -in {pem} -outform DER -out {der}"));
    read(dir, &der)
}

fn verify(m: &Path, bundle: &[u8], trust: &Trust) -> Result<String, Error> {
    verify_model(m, bundle, trust, &VerifyOptions::default(), None).map(|v| hex::encode(v.root_digest))
}

fn key_trust(dir: &Path, pub_pem: &str) -> Trust {
    Trust::PublicKey(PublicKey::from_pem(&String::from_utf8(read(dir, pub_pem)).unwrap(), pub_pem).unwrap())
}

/// `openssl dgst` signs PKCS#1 v1.5 for RSA keys and DER ECDSA for EC keys.
fn openssl_sign(dir: &Path, key: &str, hash: &str, msg: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("msg"), msg).unwrap();
    sh(dir, &format!("openssl dgst -{hash} -sign {key} -out msg.sig msg"));
    read(dir, "msg.sig")
}

fn ed25519ph_sign(dir: &Path, key: &str, msg: &[u8]) -> Vec<u8> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(&String::from_utf8(read(dir, key)).unwrap()).unwrap();
    sk.sign_prehashed(sha2::Sha512::new().chain_update(msg), None)
        .unwrap()
        .to_bytes()
        .to_vec()
}

#[test]
fn go_key_bundles_verify_for_every_key_type_the_go_client_signs_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model(d);
    sh(
        d,
        "for c in prime256v1 secp384r1 secp521r1; do openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:$c -out $c.key; done
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.key
         openssl genpkey -algorithm ED25519 -out ed.key
         for k in prime256v1 secp384r1 secp521r1 rsa rsa1024 ed; do openssl pkey -in $k.key -pubout -out $k.pub; done",
    );
    let payload = go_payload(&m, None, false);
    let msg = pae(&payload);
    let expected_root = {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        v["subject"][0]["digest"]["sha256"].as_str().unwrap().to_owned()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("prime256v1", openssl_sign(d, "prime256v1.key", "sha256", &msg)),
        ("secp384r1", openssl_sign(d, "secp384r1.key", "sha384", &msg)),
        ("secp521r1", openssl_sign(d, "secp521r1.key", "sha512", &msg)),
        ("rsa", openssl_sign(d, "rsa.key", "sha256", &msg)),
        ("ed", ed25519ph_sign(d, "ed.key", &msg)),
    ];
    for (name, sig) in &cases {
        let pub_pem = format!("{name}.pub");
        let bundle = go_key_bundle(&payload, sig, &read(d, &pub_pem));
        let root = verify(&m, &bundle, &key_trust(d, &pub_pem)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(root, expected_root, "{name}");

        // Every other key refuses it: first by hint, and without a hint by signature.
        let other = if *name == "rsa" { "ed.pub" } else { "rsa.pub" };
        let err = verify(&m, &bundle, &key_trust(d, other)).unwrap_err().to_string();
        assert!(err.contains("publicKey.hint does not match"), "{name}: {err}");
        let no_hint = String::from_utf8(bundle.clone())
            .unwrap()
            .replace(&hex::encode(Sha256::digest(read(d, &pub_pem))), "");
        let err = verify(&m, no_hint.as_bytes(), &key_trust(d, other))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{name}: {err}");
    }

    // A signature of other bytes (the same statement with one digest changed) fails.
    let mut forged = payload.clone();
    let pos = forged.windows(8).position(|w| w == b"\"digest\"").unwrap() + 10;
    forged[pos] = if forged[pos] == b'0' { b'1' } else { b'0' };
    for (name, sig) in &cases {
        let bundle = go_key_bundle(&forged, sig, &read(d, &format!("{name}.pub")));
        let err = verify(&m, &bundle, &key_trust(d, &format!("{name}.pub")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{name}: {err}");
    }

    // Pure Ed25519 (what other Sigstore clients make with Ed25519 keys) verifies too.
    std::fs::write(d.join("pae"), &msg).unwrap();
    sh(d, "openssl pkeyutl -sign -inkey ed.key -rawin -in pae -out pae.sig");
    let bundle = go_key_bundle(&payload, &read(d, "pae.sig"), &read(d, "ed.pub"));
    verify(&m, &bundle, &key_trust(d, "ed.pub")).unwrap();

    // RSA below 2048 bits is refused by name, before any signature is looked at.
    let err = PublicKey::from_pem(&String::from_utf8(read(d, "rsa1024.pub")).unwrap(), "rsa1024.pub")
        .unwrap_err()
        .to_string();
    assert!(err.contains("1024 bits") && err.contains("2048"), "{err}");
}

#[test]
fn go_statements_in_protojson_form_verify_and_still_cover_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model(d);
    sh(
        d,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out k.key; openssl pkey -in k.key -pubout -out k.pub",
    );
    let bundle_of = |payload: &[u8]| {
        let sig = openssl_sign(d, "k.key", "sha256", &pae(payload));
        go_key_bundle(payload, &sig, &read(d, "k.pub"))
    };
    // Shards of 4 bytes (several per file), and the protojson spelling with a space
    // after each colon.
    for (shard, spaced) in [(None, false), (None, true), (Some(4), false), (Some(4), true)] {
        let bundle = bundle_of(&go_payload(&m, shard, spaced));
        verify(&m, &bundle, &key_trust(d, "k.pub")).unwrap_or_else(|e| panic!("{shard:?} {spaced}: {e}"));
    }
    // The signed file set is still exact: a changed byte and an extra file are named.
    let bundle = bundle_of(&go_payload(&m, None, false));
    std::fs::write(m.join("dir/b.txt"), b"tokenizeR").unwrap();
    std::fs::write(m.join("extra"), b"x").unwrap();
    let err = verify(&m, &bundle, &key_trust(d, "k.pub")).unwrap_err().to_string();
    assert!(err.contains("dir/b.txt") && err.contains("extra"), "{err}");
}

#[test]
fn go_certificate_bundles_verify_with_the_leaf_alone_or_with_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = model(d);
    sh(
        d,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp384r1 -out root.key
         openssl req -x509 -new -key root.key -subj /CN=go-test-root -days 3650 \
           -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out root.pem
         openssl req -x509 -new -key root.key -subj /CN=other-root -days 3650 \
           -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out other-root.pem
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out int.key
         openssl req -new -key int.key -subj /CN=go-test-intermediate -out int.csr
         printf 'basicConstraints=critical,CA:TRUE,pathlen:0\\nkeyUsage=critical,keyCertSign\\n' > int.ext
         openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -extfile int.ext -out int.pem
         printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=codeSigning\\n' > leaf.ext
         for k in ec rsa ed; do
           case $k in
             ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out $k.key ;;
             rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $k.key ;;
             ed) openssl genpkey -algorithm ED25519 -out $k.key ;;
           esac
           openssl req -new -key $k.key -subj /CN=go-signer-$k -out $k.csr
           openssl x509 -req -in $k.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -extfile leaf.ext -out $k-by-root.pem
           openssl x509 -req -in $k.csr -CA int.pem -CAkey int.key -CAcreateserial -days 3650 -extfile leaf.ext -out $k-by-int.pem
         done
         printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n1.3.6.1.4.1.57264.1.1=ASN1:UTF8String:https://issuer.example\\n' > fulcio.ext
         openssl x509 -req -in ec.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -extfile fulcio.ext -out fulcio.pem",
    );
    let root = Trust::certificates_from_pems(&[String::from_utf8(read(d, "root.pem")).unwrap()]).unwrap();
    let other = Trust::certificates_from_pems(&[String::from_utf8(read(d, "other-root.pem")).unwrap()]).unwrap();
    let int_der = der_of_pem(d, "int.pem");
    let payload = go_payload(&m, None, false);
    let msg = pae(&payload);
    for k in ["ec", "rsa", "ed"] {
        let sig = match k {
            "ec" => openssl_sign(d, "ec.key", "sha256", &msg),
            "rsa" => openssl_sign(d, "rsa.key", "sha256", &msg),
            _ => ed25519ph_sign(d, "ed.key", &msg),
        };
        let leaf = go_leaf_bundle(&payload, &sig, &der_of_pem(d, &format!("{k}-by-root.pem")));
        verify(&m, &leaf, &root).unwrap_or_else(|e| panic!("{k} leaf alone: {e}"));
        let err = verify(&m, &leaf, &other).unwrap_err().to_string();
        assert!(err.contains("does not lead to a trusted root"), "{k}: {err}");

        let chain = go_chain_bundle(
            &payload,
            &sig,
            &[der_of_pem(d, &format!("{k}-by-int.pem")), int_der.clone()],
        );
        verify(&m, &chain, &root).unwrap_or_else(|e| panic!("{k} with chain: {e}"));
        // Without the intermediate the leaf reaches no trusted root.
        let cut = go_leaf_bundle(&payload, &sig, &der_of_pem(d, &format!("{k}-by-int.pem")));
        assert!(verify(&m, &cut, &root).is_err(), "{k}");
        // A bare key cannot verify a certificate bundle, nor the other way round.
        let err = verify(&m, &leaf, &key_trust_of_cert(d, &format!("{k}-by-root.pem")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signed with a certificate"), "{k}: {err}");
    }

    // A leaf with Fulcio's OIDC-issuer extension and no log entries is keyless
    // Sigstore, not a certificate to trust on its chain alone, even under a trusted root.
    let sig = openssl_sign(d, "ec.key", "sha256", &msg);
    let fulcio = go_leaf_bundle(&payload, &sig, &der_of_pem(d, "fulcio.pem"));
    let err = verify(&m, &fulcio, &root).unwrap_err().to_string();
    assert!(err.contains("keyless Sigstore"), "{err}");
}

fn key_trust_of_cert(dir: &Path, cert: &str) -> Trust {
    sh(dir, &format!("openssl x509 -in {cert} -pubkey -noout > {cert}.pub"));
    key_trust(dir, &format!("{cert}.pub"))
}
