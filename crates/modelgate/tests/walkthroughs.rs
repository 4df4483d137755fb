//! The documented walkthroughs, run from the documentation's own text: every
//! ```sh block of docs/quickstart.md, docs/production.md and docs/keys.md
//! (on SoftHSM2 tokens), and of the
//! section "Try it on one machine" of docs/postgresql.md (against the
//! PostgreSQL server of MODELGATE_POSTGRES_URL), in order, in one bash
//! (`set -euo pipefail`), with the built `modelgate` first on PATH, against
//! the mock inference server on the port the docs name. A doc that rots
//! fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The docs use fixed ports (7370, 7380, 7381, 7390, 8000): one walkthrough at a time.
static PORTS: Mutex<()> = Mutex::new(());

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```sh blocks of a Markdown text, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

/// Commands in a block: lines that are not blank, comments or continuations.
fn commands(block: &str) -> usize {
    let mut n = 0;
    let mut continued = false;
    for line in block.lines() {
        let t = line.trim();
        if !continued && !t.is_empty() && !t.starts_with('#') {
            n += 1;
        }
        continued = t.ends_with('\\');
    }
    n
}

/// A model directory like a user's.
fn model(dir: &Path) {
    let m = dir.join("my-model");
    std::fs::create_dir_all(m.join("tokenizer")).unwrap();
    std::fs::write(m.join("config.json"), "{\"layers\": 2}\n").unwrap();
    std::fs::write(m.join("tokenizer/vocab.txt"), "a\nb\n").unwrap();
    std::fs::write(m.join("weights.bin"), vec![7u8; 1 << 16]).unwrap();
}

/// The part of a Markdown text under `heading`, up to the next heading of
/// its level.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &md[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |e| e + heading.len());
    &rest[..end]
}

/// Run the blocks in `dir`; stdout on success, everything on failure.
fn run(blocks: &[String], dir: &Path) -> String {
    run_with(blocks, dir, &[])
}

/// [`run`] with these variables set.
fn run_with(blocks: &[String], dir: &Path, vars: &[(&str, &str)]) -> String {
    let _mock = modelgate_testkit::MockServer::start_on(
        "127.0.0.1:8000",
        modelgate_testkit::Mock {
            chunks: 2,
            delay: std::time::Duration::from_millis(1),
        },
    )
    .expect("the walkthroughs' inference server port 127.0.0.1:8000 is taken");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_modelgate"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Background servers end with the script, whatever way it ends.
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n{}",
        blocks.join("\n")
    );
    let out = Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("MODELGATE_AUTHORITY")
        .env_remove("MODELGATE_TOKEN")
        .env_remove("MODELGATE_STORE")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the walkthrough failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn the_quick_path_reaches_a_governed_call_in_at_most_five_commands() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let blocks = sh_blocks(&doc("quickstart.md"));
    let n: usize = blocks.iter().map(|b| commands(b)).sum();
    assert!((1..=5).contains(&n), "the quick path takes {n} commands");
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let out = run(&blocks, dir.path());
    assert!(out.contains("\"content\":\"echo: hello\""), "{out}");
    assert!(
        dir.path().join("my-model/model.sig").exists(),
        "the model was not signed"
    );
}

#[test]
fn the_production_walkthrough_runs_end_to_end() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let blocks = sh_blocks(&doc("production.md"));
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let out = run(&blocks, dir.path());
    // One governed call through each of the two nodes, over mutual TLS.
    assert_eq!(
        out.matches("\"content\":\"echo: score applicant 42\"").count(),
        2,
        "{out}"
    );
    // The root keys left the authority's directory.
    assert!(!dir.path().join("authority/offline-root-keys/root-1.key").exists());
    // Trust root v2 is in force, signed by two of the three custodians.
    let tr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("v2.dsse.json")).unwrap()).unwrap();
    assert_eq!(tr["signatures"].as_array().unwrap().len(), 2, "{tr}");
    // The nodes served under a trust root that requires the witness's
    // cosignature, which the authority fetched from it over mutual TLS.
    let v2: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("v2.json")).unwrap()).unwrap();
    assert_eq!(v2["witness_quorum"], 1, "{v2}");
}

#[test]
fn the_key_ceremony_on_tokens_runs_end_to_end() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Path::new(modelgate_testkit::softhsm::MODULE).exists(),
        "SoftHSM2 is missing: scripts/test.sh installs Debian's softhsm2 and opensc"
    );
    let blocks = sh_blocks(&doc("keys.md"));
    assert!(blocks.len() >= 6, "{} blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    model(dir.path());
    let out = run(&blocks, dir.path());
    assert!(out.contains("accepted at index 1"), "{out}");
    assert!(out.contains("store: intact"), "{out}");
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("v2.dsse.json")).unwrap()).unwrap();
    assert_eq!(v2["signatures"].as_array().unwrap().len(), 2, "{v2}");
    // Nothing private on disk: no key file, and no PEM private key anywhere.
    for e in walk(dir.path()) {
        let text = std::fs::read(&e).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains("PRIVATE KEY-----") && !text.contains("PRIVATE+KEY+"),
            "{} holds a private key",
            e.display()
        );
    }
}

/// Every file under `dir` outside SoftHSM's own token directory.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "tokens") {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_authorities_on_postgresql_as_the_operators_page_shows() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let pg = modelgate_testkit::postgres::Server::required().url.clone();
    // The page creates the database itself.
    let mut c = postgres::Client::connect(&pg, postgres::NoTls).unwrap();
    c.batch_execute("DROP DATABASE IF EXISTS modelgate_try WITH (FORCE)")
        .unwrap();
    let blocks = sh_blocks(section(&doc("postgresql.md"), "## Try it on one machine"));
    assert_eq!(blocks.len(), 4, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = run_with(&blocks, dir.path(), &[("PG", &pg)]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"modelgate_sequencer 1"), "{out}");
    assert!(lines.contains(&"modelgate_sequencer 0"), "{out}");
    assert!(out.contains("accepted at index 1"), "{out}");
    assert!(out.contains("store: intact"), "{out}");
    // The checkpoint the replica serves after the takeover covers both entries.
    assert!(out.contains("example.com/governance\n2\n"), "{out}");
}
