//! Interoperability with the reference OpenSSF `model-signing` 1.1.1 package, run for
//! real: `scripts/test.sh` installs it and sets MODELGATE_REFERENCE_PYTHON. Without it
//! these tests fail when MODELGATE_REQUIRE_INTEROP or CI is set, and are reported as
//! skipped (on stderr) only in a bare local `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

mod common;

fn reference_python() -> Option<PathBuf> {
    common::installed_tool("MODELGATE_REFERENCE_PYTHON", "model-signing 1.1.1")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("couldn't run {cmd:?}: {e}"));
    out
}

fn mg(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_modelgate")).args(args))
}

fn reference(py: &Path, args: &[&str]) -> Output {
    run(Command::new(py).arg("-m").arg("model_signing").args(args))
}

fn reference_sign_key(py: &Path, model: &Path, sig: &Path, key: &Path) -> Output {
    reference(
        py,
        &["sign", "key", s(model), "--signature", s(sig), "--private_key", s(key)],
    )
}

fn reference_verify_key(py: &Path, model: &Path, sig: &Path, public: &Path) -> Output {
    reference(
        py,
        &[
            "verify",
            "key",
            s(model),
            "--signature",
            s(sig),
            "--public_key",
            s(public),
        ],
    )
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refused(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should have been refused with exit 1:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Nested dirs, UTF-8 names, spaces, an empty file, dotfiles, git metadata.
fn make_model(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("répertoire avec espace")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join("config.json"), "{\"a\": 1}\n").unwrap();
    fs::write(root.join("empty.bin"), "").unwrap();
    fs::write(root.join("sub/deeper/weights.bin"), vec![7u8; 300_000]).unwrap();
    fs::write(root.join("répertoire avec espace/日本語 ファイル.txt"), "データ").unwrap();
    fs::write(root.join(".hidden"), "h").unwrap();
    fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
}

fn keypair(dir: &Path, alg: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(alg);
    ok(&mg(&["keygen", "--algorithm", alg, "--out", s(&prefix)]), "keygen");
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn signed_root(sig: &Path) -> String {
    let bundle: serde_json::Value = serde_json::from_slice(&fs::read(sig).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    statement["subject"][0]["digest"]["sha256"].as_str().unwrap().to_owned()
}

#[test]
fn keys_p256_and_p384_verify_both_ways() {
    let Some(py) = reference_python() else { return };
    for alg in ["ecdsa-p256", "ecdsa-p384"] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        make_model(&model);
        let (key, public) = keypair(dir.path(), alg);
        let sig = model.join("model.sig");

        ok(&mg(&["sign", s(&model), "--key", s(&key)]), "modelgate sign");
        ok(
            &reference_verify_key(&py, &model, &sig, &public),
            &format!("reference verify of our {alg} bundle"),
        );

        fs::remove_file(&sig).unwrap();
        ok(&reference_sign_key(&py, &model, &sig, &key), "reference sign");
        ok(
            &mg(&["verify", s(&model), "--public-key", s(&public)]),
            &format!("our verify of the reference {alg} bundle"),
        );
    }
}

/// Root CA (P-384) -> intermediate CA (P-256) -> leaf (P-256, digitalSignature, codeSigning).
fn certificate_chain(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let sh = |script: &str| {
        let out = run(Command::new("bash").arg("-ec").arg(script).current_dir(dir));
        ok(&out, "openssl");
    };
    sh("openssl ecparam -name secp384r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out root.key
        openssl req -x509 -new -key root.key -subj /CN=modelgate-test-root -days 3650 \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out root.pem
        openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out int.key
        openssl req -new -key int.key -subj /CN=modelgate-test-intermediate -out int.csr
        printf 'basicConstraints=critical,CA:TRUE,pathlen:0\\nkeyUsage=critical,keyCertSign\\n' > int.ext
        openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -extfile int.ext -out int.pem
        openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out leaf.key
        openssl req -new -key leaf.key -subj /CN=model-signer -out leaf.csr
        printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=codeSigning\\n' > leaf.ext
        openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 3650 -extfile leaf.ext -out leaf.pem
        openssl req -x509 -new -key root.key -subj /CN=other-root -days 3650 \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out other-root.pem");
    (
        dir.join("leaf.key"),
        dir.join("leaf.pem"),
        dir.join("int.pem"),
        dir.join("root.pem"),
    )
}

#[test]
fn certificate_chain_verifies_both_ways() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, leaf, int, root) = certificate_chain(dir.path());
    let model = dir.path().join("model");
    make_model(&model);
    let sig = model.join("model.sig");

    ok(
        &mg(&[
            "sign",
            s(&model),
            "--key",
            s(&key),
            "--signing-cert",
            s(&leaf),
            "--cert-chain",
            s(&int),
        ]),
        "modelgate sign (certificate)",
    );
    ok(
        &reference(
            &py,
            &[
                "verify",
                "certificate",
                s(&model),
                "--signature",
                s(&sig),
                "--certificate_chain",
                s(&root),
            ],
        ),
        "reference verify of our certificate bundle",
    );
    ok(
        &mg(&["verify", s(&model), "--cert-chain", s(&root)]),
        "our verify of our certificate bundle",
    );
    let other = dir.path().join("other-root.pem");
    refused(
        &mg(&["verify", s(&model), "--cert-chain", s(&other)]),
        "verify against an unrelated root",
    );

    fs::remove_file(&sig).unwrap();
    ok(
        &reference(
            &py,
            &[
                "sign",
                "certificate",
                s(&model),
                "--signature",
                s(&sig),
                "--private_key",
                s(&key),
                "--signing_certificate",
                s(&leaf),
                "--certificate_chain",
                s(&int),
            ],
        ),
        "reference sign (certificate)",
    );
    ok(
        &mg(&["verify", s(&model), "--cert-chain", s(&root)]),
        "our verify of the reference certificate bundle",
    );
    refused(
        &mg(&["verify", s(&model), "--cert-chain", s(&other)]),
        "verify against an unrelated root",
    );
}

#[test]
fn digests_are_equal_on_a_tricky_tree() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    make_model(&model);
    let (key, _) = keypair(dir.path(), "ecdsa-p256");
    let sig = dir.path().join("reference.sig");
    ok(&reference_sign_key(&py, &model, &sig, &key), "reference sign");
    let ours = mg(&["digest", s(&model)]);
    ok(&ours, "modelgate digest");
    assert_eq!(String::from_utf8_lossy(&ours.stdout).trim(), signed_root(&sig));
}

#[test]
fn tampering_is_refused_by_both() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "ecdsa-p256");
    type Tamper = fn(&Path);
    let tampers: [(&str, Tamper); 3] = [
        ("changed byte", |m| {
            let p = m.join("sub/deeper/weights.bin");
            let mut b = fs::read(&p).unwrap();
            b[150_000] ^= 0x80;
            fs::write(&p, b).unwrap();
        }),
        ("extra file", |m| fs::write(m.join("sub/extra.bin"), "x").unwrap()),
        ("missing file", |m| fs::remove_file(m.join("config.json")).unwrap()),
    ];
    for (what, tamper) in tampers {
        for signer in ["modelgate", "reference"] {
            let model = dir.path().join(format!("{what}-{signer}").replace(' ', "-"));
            make_model(&model);
            let sig = model.join("model.sig");
            if signer == "modelgate" {
                ok(&mg(&["sign", s(&model), "--key", s(&key)]), "sign");
            } else {
                ok(&reference_sign_key(&py, &model, &sig, &key), "sign");
            }
            tamper(&model);
            let ours = mg(&["verify", s(&model), "--public-key", s(&public)]);
            refused(&ours, &format!("our verify after {what} ({signer} signed)"));
            let theirs = reference_verify_key(&py, &model, &sig, &public);
            assert_eq!(
                theirs.status.code(),
                Some(1),
                "reference verify after {what} ({signer} signed) must fail"
            );
        }
    }
}

#[test]
fn shards_interoperate() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    make_model(&model);
    let (key, public) = keypair(dir.path(), "ecdsa-p256");
    let sig = model.join("model.sig");

    // Ours (integer shard_size) verifies in the reference. Its CLI always re-hashes
    // with `files` (it passes an explicit hashing config), so no shards bundle can pass
    // there, not even its own; its API reads the method from the bundle.
    let sign = [
        "sign",
        s(&model),
        "--key",
        s(&key),
        "--method",
        "shards",
        "--shard-size",
        "65536",
    ];
    ok(&mg(&sign), "sign shards");
    let verify_api = format!(
        "from model_signing import verifying\n\
         verifying.Config().use_elliptic_key_verifier(public_key={public:?}).verify({model:?}, {sig:?})\n",
        public = s(&public),
        model = s(&model),
        sig = s(&sig)
    );
    ok(
        &run(Command::new(&py).arg("-c").arg(&verify_api)),
        "reference (API) verify of our shards bundle",
    );
    // Both notice one changed bit in one shard.
    let weights = model.join("sub/deeper/weights.bin");
    let original = fs::read(&weights).unwrap();
    let mut tampered = original.clone();
    tampered[200_000] ^= 1;
    fs::write(&weights, &tampered).unwrap();
    let out = run(Command::new(&py).arg("-c").arg(&verify_api));
    assert!(!out.status.success(), "reference must refuse a tampered shard");
    refused(
        &mg(&["verify", s(&model), "--public-key", s(&public)]),
        "our verify of a tampered shard",
    );
    fs::write(&weights, &original).unwrap();

    // The reference's (float shard_size) verifies here, and its root digest is ours.
    fs::remove_file(&sig).unwrap();
    let script = format!(
        "from model_signing import signing, hashing\n\
         signing.Config().use_elliptic_key_signer(private_key={key:?}).set_hashing_config(\n\
           hashing.Config().use_shard_serialization(shard_size=65536).set_ignored_paths(paths=['model.sig'])\n\
         ).sign({model:?}, {sig:?})\n",
        key = s(&key),
        model = s(&model),
        sig = s(&sig)
    );
    ok(&run(Command::new(&py).arg("-c").arg(&script)), "reference sign shards");
    assert!(fs::read_to_string(&sig).is_ok());
    ok(
        &mg(&["verify", s(&model), "--public-key", s(&public)]),
        "our verify of the reference shards bundle",
    );
    let ours = mg(&["digest", s(&model), "--method", "shards", "--shard-size", "65536"]);
    ok(&ours, "digest shards");
    assert_eq!(String::from_utf8_lossy(&ours.stdout).trim(), signed_root(&sig));
}

/// BLAKE2b-512, which the reference offers through its API (`blake2`, written as
/// `blake2b`) and the Go client writes: its bundles verify here, in both methods, with
/// its root digest equal to ours; ours verify there when it is told the hashing (its
/// verifier cannot guess it: it asks its hasher for `blake2b`, which only knows
/// `blake2` — checked below, so the claim in our docs stays true for the pinned release).
#[test]
fn blake2b_bundles_interoperate() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    make_model(&model);
    let (key, public) = keypair(dir.path(), "ecdsa-p256");
    let sig = dir.path().join("ref.sig");
    for (method, config, digest_args) in [
        (
            "files",
            "hashing.Config().use_file_serialization(hashing_algorithm='blake2')",
            vec!["--hash", "blake2b"],
        ),
        (
            "shards",
            "hashing.Config().use_shard_serialization(hashing_algorithm='blake2', shard_size=65536)",
            vec!["--hash", "blake2b", "--method", "shards", "--shard-size", "65536"],
        ),
    ] {
        let script = format!(
            "from model_signing import signing, verifying, hashing\n\
             signing.Config().use_elliptic_key_signer(private_key={key:?}).set_hashing_config({config}).sign({model:?}, {sig:?})\n\
             try:\n\
             \x20   verifying.Config().use_elliptic_key_verifier(public_key={public:?}).verify({model:?}, {sig:?})\n\
             \x20   print('self-verified')\n\
             except ValueError as e:\n\
             \x20   print('self-verify:', e)\n",
            key = s(&key),
            public = s(&public),
            model = s(&model),
            sig = s(&sig)
        );
        let out = run(Command::new(&py).arg("-c").arg(&script));
        ok(&out, &format!("reference sign {method} blake2"));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("Unsupported hashing method blake2b"), "{method}: {said}");
        let ours = ["verify", s(&model), "--public-key", s(&public), "--signature", s(&sig)];
        ok(
            &mg(&ours),
            &format!("our verify of the reference's {method} blake2b bundle"),
        );
        let digest = mg(&[vec!["digest", s(&model)], digest_args.clone()].concat());
        ok(&digest, "digest blake2b");
        assert_eq!(
            String::from_utf8_lossy(&digest.stdout).trim(),
            signed_root(&sig),
            "{method}"
        );
        // A changed byte is refused, by name.
        let weights = model.join("sub/deeper/weights.bin");
        let original = fs::read(&weights).unwrap();
        let mut tampered = original.clone();
        tampered[100] ^= 1;
        fs::write(&weights, &tampered).unwrap();
        let out = mg(&ours);
        refused(&out, &format!("our verify of a tampered file, {method} blake2b"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("weights.bin"), "{method}");
        fs::write(&weights, &original).unwrap();

        // Ours, verified there with the hashing named.
        let our_sig = dir.path().join("ours.sig");
        let sign = [
            vec!["sign", s(&model), "--key", s(&key), "--signature", s(&our_sig)],
            digest_args.clone(),
        ]
        .concat();
        ok(&mg(&sign), "sign blake2b");
        let verify = format!(
            "from model_signing import verifying, hashing\n\
             verifying.Config().use_elliptic_key_verifier(public_key={public:?}).set_hashing_config({config}).verify({model:?}, {sig:?})\n",
            public = s(&public),
            model = s(&model),
            sig = s(&our_sig)
        );
        ok(
            &run(Command::new(&py).arg("-c").arg(&verify)),
            &format!("reference (API, blake2 named) verify of our {method} blake2b bundle"),
        );
    }
}

/// The python of a venv with the reference's v0.2.0 release (its bundles are
/// the ones NVIDIA NGC and others shipped before v1.0).
fn reference_v02_python() -> Option<PathBuf> {
    common::installed_tool("MODELGATE_REFERENCE_V02_PYTHON", "model-signing 0.2.0")
}

#[test]
fn bundles_made_by_reference_v0_2_verify_here_while_they_cover_every_file() {
    let (Some(py02), Some(py)) = (reference_v02_python(), reference_python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    make_model(&model);
    // v0.2 had no default ignores; a model as shipped has no .git.
    fs::remove_dir_all(model.join(".git")).unwrap();
    let (key, public) = keypair(dir.path(), "ecdsa-p256");
    let sig = model.join("model.sig");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sign_v02.py");
    ok(
        &run(Command::new(&py02).arg(&script).args([s(&model), s(&key), s(&sig)])),
        "model-signing 0.2.0 sign",
    );
    // It really is the v0.2 format: one in-toto subject per file, annotated.
    let bundle: serde_json::Value = serde_json::from_slice(&fs::read(&sig).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["predicateType"], "https://model_signing/Digests/v0.1");
    assert_eq!(statement["subject"].as_array().unwrap().len(), 5, "{statement}");
    assert_eq!(
        statement["subject"][0]["annotations"]["actual_hash_algorithm"],
        "file-sha256"
    );

    let out = mg(&["verify", s(&model), "--public-key", s(&public)]);
    ok(&out, "modelgate verify of a v0.2 bundle");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(5 resources)"));
    ok(
        &reference_verify_key(&py, &model, &sig, &public),
        "model-signing 1.1.1 verify of the same v0.2 bundle",
    );

    // Whatever the bundle's age, the model must still be exactly what was signed.
    fs::write(model.join("config.json"), "{\"a\": 2}\n").unwrap();
    let out = mg(&["verify", s(&model), "--public-key", s(&public)]);
    refused(&out, "a changed file under a v0.2 bundle");
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed: config.json"));
    fs::write(model.join("config.json"), "{\"a\": 1}\n").unwrap();
    fs::write(model.join("extra.bin"), "x").unwrap();
    let out = mg(&["verify", s(&model), "--public-key", s(&public)]);
    refused(&out, "an extra file under a v0.2 bundle");
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra.bin"));
    fs::remove_file(model.join("extra.bin")).unwrap();
    fs::remove_file(model.join("empty.bin")).unwrap();
    let out = mg(&["verify", s(&model), "--public-key", s(&public)]);
    refused(&out, "a missing file under a v0.2 bundle");
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.bin"));
    // Another key: refused.
    let (_, other) = keypair(dir.path(), "ecdsa-p384");
    fs::write(model.join("empty.bin"), "").unwrap();
    refused(
        &mg(&["verify", s(&model), "--public-key", s(&other)]),
        "a v0.2 bundle checked with another key",
    );
}

/// An Ed25519 key from `modelgate keygen` is a standard PKCS#8 key: OpenSSL 3
/// and Python's `cryptography` (the reference venv's) read it and derive the
/// public key `keygen` wrote.
#[test]
fn ed25519_keys_load_in_openssl_and_python_cryptography() {
    let Some(py) = reference_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("gov");
    let o = mg(&["keygen", "--algorithm", "ed25519", "--out", prefix.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = dir.path().join("gov.key");
    let public = std::fs::read_to_string(dir.path().join("gov.pub")).unwrap();
    let o = run(Command::new("openssl").args(["pkey", "-in", key.to_str().unwrap(), "-pubout"]));
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), public);
    let script = "import sys\nfrom cryptography.hazmat.primitives import serialization as s\n\
        k = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n\
        sys.stdout.write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode())\n";
    let o = run(Command::new(&py).args(["-c", script, key.to_str().unwrap()]));
    assert!(
        o.status.success(),
        "cryptography: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), public);
    // And modelgate still reads it (a governance key signs an entry).
    let o = mg(&[
        "approve",
        &"a".repeat(64),
        "--scope",
        "prod/*",
        "--until",
        "+1d",
        "--tier",
        "low",
        "--ticket",
        "T-1",
        "--key",
        key.to_str().unwrap(),
        "--out",
        dir.path().join("x.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
