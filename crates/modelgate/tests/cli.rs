//! The command-line contract: exit codes 0/1/2, messages that name the problem, JSON
//! output, key file permissions. These run the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{mg, s, stderr, stdout};

mod common;

struct Setup {
    _dir: tempfile::TempDir,
    model: std::path::PathBuf,
    key: std::path::PathBuf,
    public: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    fs::create_dir_all(model.join("sub")).unwrap();
    fs::write(model.join("a.bin"), "aaaa").unwrap();
    fs::write(model.join("sub/b.bin"), "bbbb").unwrap();
    let prefix = dir.path().join("k");
    assert!(mg(&["keygen", "--out", s(&prefix)]).status.success());
    let key = dir.path().join("k.key");
    let public = dir.path().join("k.pub");
    assert!(mg(&["sign", s(&model), "--key", s(&key)]).status.success());
    Setup {
        _dir: dir,
        model,
        key,
        public,
    }
}

#[test]
fn keygen_writes_private_key_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("approver");
    for alg in ["ed25519", "ecdsa-p521"] {
        let out = mg(&["keygen", "--algorithm", alg, "--out", s(&prefix), "--force"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mode = fs::metadata(dir.path().join("approver.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(fs::read_to_string(dir.path().join("approver.pub"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }
    let again = mg(&["keygen", "--out", s(&prefix)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
}

#[test]
fn verify_exit_codes() {
    let t = setup();
    let good = mg(&["verify", s(&t.model), "--public-key", s(&t.public)]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));

    fs::write(t.model.join("sub/b.bin"), "BBBB").unwrap();
    let bad = mg(&["verify", s(&t.model), "--public-key", s(&t.public)]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("changed: sub/b.bin"), "{}", stderr(&bad));

    let missing = mg(&[
        "verify",
        s(&t.model),
        "--public-key",
        s(&t.public),
        "--signature",
        "/nonexistent/x.sig",
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/nonexistent/x.sig"));

    let usage = mg(&["verify", s(&t.model)]);
    assert_eq!(usage.status.code(), Some(2), "trust material is required");

    let not_a_key = mg(&["verify", s(&t.model), "--public-key", s(&t.model.join("a.bin"))]);
    assert_eq!(not_a_key.status.code(), Some(2));
    assert!(stderr(&not_a_key).contains("a.bin"), "{}", stderr(&not_a_key));
}

#[test]
fn verify_json_lists_each_difference() {
    let t = setup();
    let ok = mg(&["verify", s(&t.model), "--public-key", s(&t.public), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["resources"], 2);
    assert!(v["root_digest"].as_str().unwrap().starts_with("sha256:"));

    fs::write(t.model.join("new.bin"), "n").unwrap();
    fs::remove_file(t.model.join("a.bin")).unwrap();
    let out = mg(&["verify", s(&t.model), "--public-key", s(&t.public), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["kind"], "verification_failed");
    assert_eq!(v["error"]["missing"], serde_json::json!(["a.bin"]));
    assert_eq!(v["error"]["extra"], serde_json::json!(["new.bin"]));

    let lax = mg(&[
        "verify",
        s(&t.model),
        "--public-key",
        s(&t.public),
        "--ignore-unsigned-files",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&lax.stdout).unwrap();
    assert_eq!(v["error"]["extra"], serde_json::json!([]));
    assert_eq!(v["error"]["missing"], serde_json::json!(["a.bin"]));
}

#[test]
fn corrupt_or_foreign_signatures_fail_verification() {
    let t = setup();
    let sig = t.model.join("model.sig");
    for garbage in [&b""[..], b"{", b"{\"mediaType\": 1}", &[0xff, 0xfe, 0x00]] {
        fs::write(&sig, garbage).unwrap();
        let out = mg(&["verify", s(&t.model), "--public-key", s(&t.public)]);
        assert_eq!(out.status.code(), Some(1), "{garbage:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("malformed signature bundle"), "{}", stderr(&out));
    }
}

#[test]
fn sign_refuses_unusable_keys_and_paths() {
    let t = setup();
    let dir = t.key.parent().unwrap();
    let ed = dir.join("ed");
    assert!(mg(&["keygen", "--algorithm", "ed25519", "--out", s(&ed)])
        .status
        .success());
    let out = mg(&["sign", s(&t.model), "--key", s(&dir.join("ed.key"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not ECDSA"), "{}", stderr(&out));

    let outside = mg(&["sign", s(&t.model), "--key", s(&t.key), "--ignore-paths", "/etc/passwd"]);
    assert_eq!(outside.status.code(), Some(2));
    assert!(stderr(&outside).contains("outside the model"), "{}", stderr(&outside));

    let nothing = dir.join("empty-model");
    fs::create_dir_all(&nothing).unwrap();
    let out = mg(&["sign", s(&nothing), "--key", s(&t.key)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no file left"), "{}", stderr(&out));

    let zero = mg(&[
        "sign",
        s(&t.model),
        "--key",
        s(&t.key),
        "--method",
        "shards",
        "--shard-size",
        "0",
    ]);
    assert_eq!(zero.status.code(), Some(2));
}

#[test]
fn ignore_paths_relative_and_absolute_agree() {
    let t = setup();
    let rel = mg(&["digest", s(&t.model), "--ignore-paths", "sub"]);
    let abs = mg(&["digest", s(&t.model), "--ignore-paths", s(&t.model.join("sub"))]);
    let all = mg(&["digest", s(&t.model)]);
    assert!(rel.status.success() && abs.status.success());
    assert_eq!(rel.stdout, abs.stdout);
    assert_ne!(rel.stdout, all.stdout);
    // The digest of a signed model equals the root digest in its signature.
    let v: serde_json::Value =
        serde_json::from_slice(&mg(&["verify", s(&t.model), "--public-key", s(&t.public), "--json"]).stdout).unwrap();
    assert_eq!(
        format!("sha256:{}", String::from_utf8_lossy(&all.stdout).trim()),
        v["root_digest"].as_str().unwrap()
    );
}

#[test]
fn demo_runs_end_to_end() {
    let out = mg(&["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "verification refused it (changed: weights.bin)",
        "refused (separation-of-duties",
        "refused (threshold",
        "all ten lifecycle steps: Serving",
        "through the node's gateway: 200",
        "a scope no approval covers: 403 ScopeNotApproved",
        "its proof, verified offline with the pinned trust root only",
        "Contained UnauthorizedModification",
        "the node contains it (UnverifiableTransition",
        "authority: consistent",
        "demo complete",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn sec1_pem_keys_sign_and_verify() {
    let t = setup();
    let dir = t.key.parent().unwrap();
    let sec1 = dir.join("sec1.key");
    let public = dir.join("sec1.pub");
    let gen = Command::new("openssl")
        .args(["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", s(&sec1)])
        .output()
        .unwrap();
    assert!(gen.status.success());
    assert!(fs::read_to_string(&sec1).unwrap().contains("BEGIN EC PRIVATE KEY"));
    let export = Command::new("openssl")
        .args(["ec", "-in", s(&sec1), "-pubout", "-out", s(&public)])
        .output()
        .unwrap();
    assert!(export.status.success());
    let out = mg(&["sign", s(&t.model), "--key", s(&sec1)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mg(&["verify", s(&t.model), "--public-key", s(&public)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The key from setup() is a different signer now.
    let out = mg(&["verify", s(&t.model), "--public-key", s(&t.public)]);
    assert_eq!(out.status.code(), Some(1));
}

/// The progress line: drawn on a real terminal (a pty made by util-linux
/// `script`), never written when stderr is a file or a pipe.
#[test]
fn the_progress_line_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    // Sparse: a second or two of hashing without writing a gigabyte.
    std::fs::File::create(model.join("weights.bin"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let typescript = dir.path().join("typescript");
    let cmd = format!("{} digest {}", env!("CARGO_BIN_EXE_modelgate"), s(&model));
    let o = Command::new("script")
        .args(["-qec", &cmd, s(&typescript)])
        .output()
        .expect("util-linux `script` (Debian's bsdutils) is needed for this test");
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = std::fs::read_to_string(&typescript).unwrap();
    assert!(seen.contains("\rhashing ") && seen.contains("/1.00 GiB"), "{seen:?}");
    // The same command with stderr captured (not a terminal): no progress line.
    let o = mg(&["digest", s(&model)]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
    assert_eq!(stdout(&o).trim().len(), 64);
}

#[test]
fn authority_serve_refuses_a_node_write_rate_that_is_not_positive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("authority");
    for rate in ["0", "-1", "NaN"] {
        let o = mg(&[
            "authority",
            "serve",
            "--data",
            s(&data),
            &format!("--node-write-rate={rate}"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{rate}: {}", stderr(&o));
        assert!(stderr(&o).contains("--node-write-rate"), "{}", stderr(&o));
    }
    assert!(!data.exists(), "nothing initialised on a usage error");
}

/// `modelgate demo --serve` for one round on a free port, with `inference`.
fn live_demo(inference: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelgate"));
    cmd.args([
        "demo",
        "--serve",
        "--listen",
        "127.0.0.1:0",
        "--rounds",
        "1",
        "--inference",
        inference,
    ]);
    cmd
}

/// Play one round of the live demo with `inference` (and `python` for
/// llama.cpp): what it said, after checking the console while it played.
fn live_demo_round(inference: &str, python: Option<&std::path::Path>) -> String {
    use std::io::{BufRead, BufReader};
    let mut cmd = live_demo(inference);
    if let Some(p) = python {
        cmd.env("MODELGATE_PYTHON", p);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("console: ")
        .unwrap_or_else(|| panic!("first line {first:?}"))
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let page = agent.get(&url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(page.contains("Overview"), "{page}");
    let mut said = Vec::new();
    for l in lines {
        let l = l.unwrap();
        if l.contains("Serving on both") && said.len() < 3 {
            // The dashboard shows both nodes while the demo plays.
            let v = common::world::get_json(&format!("{url}health.json"));
            assert_eq!(v["nodes"].as_array().unwrap().len(), 2, "{v}");
        }
        if l.contains("each call is replicated to the authority") {
            // The calls reach the lineage explorer while the demo plays.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let page = common::world::get_text(&format!("{url}lineage?decision=allow"));
                if page.contains("credit-scorer") && page.contains("allowed") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no call in the lineage explorer:\n{page}"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        said.push(l);
    }
    let status = child.wait().unwrap();
    let text = said.join("\n");
    assert!(status.success(), "{text}");
    text
}

#[test]
fn the_live_demo_serves_its_console_and_plays_a_round() {
    let text = live_demo_round("builtin", None);
    for want in [
        "inference server: the built-in scorer",
        "each call is replicated to the authority",
        "calls through both gateways: node-1: 10 × 200, node-2: 10 × 200",
        "one byte of weights.bin changed on node-2",
        "Serving on both",
        "node-2: Contained UnauthorizedModification",
        "node-1 still Serving",
        "revoked: Contained on both nodes",
        "Contained SyncInterrupted on both",
        "the authority reachable again: Serving on both nodes",
        "stopping",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// The live demo in front of a real llama.cpp server (llama-cpp-python,
/// which scripts/test.sh installs and names in MODELGATE_LLAMA_PYTHON): the
/// generated GGUF model loads, is governed like any model, and answers.
#[test]
fn the_live_demo_governs_a_real_llama_cpp_server() {
    let Some(python) = common::installed_tool("MODELGATE_LLAMA_PYTHON", "llama-cpp-python") else {
        return;
    };
    let text = live_demo_round("llama-cpp", Some(&python));
    for want in [
        "inference server: llama.cpp (llama-cpp-python 0.3.36) serving a generated",
        "calls through both gateways: node-1: 10 × 200, node-2: 10 × 200",
        "one byte of model.gguf changed on node-2: Contained UnauthorizedModification",
        "after the revocation: node-1: 10 × 403, node-2: 10 × 403",
        "the authority reachable again: Serving on both nodes",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[test]
fn the_live_demo_names_why_llama_cpp_cannot_run() {
    let o = live_demo("llama-cpp")
        .env("MODELGATE_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--inference llama-cpp: /nonexistent/python3 could not be run"),
        "{}",
        stderr(&o)
    );
}
