//! One verdict, two verifiers: the proof viewer a person downloads from the
//! console (one self-contained HTML file) and the CLI (`modelgate log
//! verify-proof`, `modelgate log verify-checkpoint`) must agree on every
//! proof. The cases are real tlog-proofs of a dev authority's log, proofs and
//! checkpoints of a log with two witnesses, and single-byte and single-field
//! mutations of each, more than a thousand in all. The viewer runs in Debian's
//! Chromium from `file://` with the network off (`tests/browser/verdicts.mjs`,
//! which also fails on any request the page makes). Missing Chromium or the
//! npm packages fail this test; it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::s;
use modelgate_tlog::{leaf_hash, Checkpoint, KeyType, MemoryTree, Note, SignerKey, TlogProof};
use serde_json::{json, Value};

/// A deterministic stream of numbers (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone)]
struct Case {
    kind: &'static str,
    proof: Vec<u8>,
    entry: Vec<u8>,
    leaf_hash: Option<String>,
    log_key: String,
    witnesses: Vec<String>,
    quorum: usize,
    what: String,
}

impl Case {
    fn json(&self, expect_valid: bool) -> Value {
        json!({
            "kind": self.kind,
            "proof": B64.encode(&self.proof),
            "entry": B64.encode(&self.entry),
            "leaf_hash": self.leaf_hash,
            "log_key": self.log_key,
            "witnesses": self.witnesses,
            "quorum": self.quorum,
            "expect_valid": expect_valid,
        })
    }

    /// The CLI's verdict: exit 0 is valid; 1 (invalid) and 2 (bad input) are not.
    fn cli(&self, dir: &Path) -> bool {
        let proof = dir.join("proof");
        std::fs::write(&proof, &self.proof).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelgate"));
        cmd.arg("log");
        if self.kind == "tlog-proof" {
            cmd.args(["verify-proof", s(&proof)]);
            match &self.leaf_hash {
                Some(h) => {
                    cmd.args(["--leaf-hash", h]);
                }
                None => {
                    let entry = dir.join("entry");
                    std::fs::write(&entry, &self.entry).unwrap();
                    cmd.args(["--entry", s(&entry)]);
                }
            }
        } else {
            cmd.args(["verify-checkpoint", s(&proof)]);
        }
        cmd.args(["--vkey", &self.log_key, "--quorum", &self.quorum.to_string()]);
        for w in &self.witnesses {
            cmd.args(["--witness", w]);
        }
        let o = cmd.stdout(Stdio::null()).stderr(Stdio::null()).output().unwrap();
        match o.status.code() {
            Some(0) => true,
            Some(1 | 2) => false,
            other => panic!("{}: the CLI exited {other:?}", self.what),
        }
    }
}

/// A log of `n` entries with a checkpoint signed by `log` and cosigned by
/// each of `witnesses` (cosignature/v1): tlog-proofs of a few of its entries
/// and the checkpoint itself, as cases.
fn synthetic(n: u64, log: &SignerKey, witnesses: &[SignerKey], quorum: usize, rng: &mut Rng) -> Vec<Case> {
    let mut tree = MemoryTree::new();
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{{\"entry\":{i},\"nonce\":{}}}", rng.next()).into_bytes())
        .collect();
    for e in &entries {
        tree.append(leaf_hash(e));
    }
    let cp = Checkpoint {
        origin: log.name().to_owned(),
        size: n,
        root: tree.root(),
        extensions: vec![],
    };
    let mut note: Note = cp.sign(log).unwrap();
    for (k, w) in witnesses.iter().enumerate() {
        note.add_signature(w.cosign(&cp.to_text(), 1_780_000_000 + k as u64).unwrap())
            .unwrap();
    }
    let note = note.to_bytes();
    let keys = |c: &mut Case| {
        c.log_key = log.verifier().to_string();
        c.witnesses = witnesses.iter().map(|w| w.verifier().to_string()).collect();
        c.quorum = quorum;
    };
    let mut out = Vec::new();
    let mut checkpoint = Case {
        kind: "checkpoint",
        proof: note.clone(),
        entry: vec![],
        leaf_hash: None,
        log_key: String::new(),
        witnesses: vec![],
        quorum: 0,
        what: format!("checkpoint of {n} with {} witnesses", witnesses.len()),
    };
    keys(&mut checkpoint);
    out.push(checkpoint);
    for index in [0, n / 2, n - 1] {
        let hashes = modelgate_tlog::inclusion_proof(index, n, &tree).unwrap();
        let proof = TlogProof {
            extra: None,
            index,
            hashes,
            checkpoint: note.clone(),
        }
        .to_bytes();
        let mut c = Case {
            kind: "tlog-proof",
            proof,
            entry: entries[index as usize].clone(),
            leaf_hash: None,
            log_key: String::new(),
            witnesses: vec![],
            quorum: 0,
            what: format!("tlog-proof of {index} in {n}"),
        };
        keys(&mut c);
        out.push(c);
    }
    out
}

/// The dev authority's own proofs: every entry of its log, and its checkpoint.
fn from_authority(url: &str, log_key: &str) -> Vec<Case> {
    let get = |path: &str| -> Vec<u8> {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        agent
            .get(&format!("{url}{path}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap()
    };
    let checkpoint = get("/log/checkpoint");
    let size: u64 = std::str::from_utf8(&checkpoint)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut out = vec![Case {
        kind: "checkpoint",
        proof: checkpoint,
        entry: vec![],
        leaf_hash: None,
        log_key: log_key.to_owned(),
        witnesses: vec![],
        quorum: 0,
        what: "the authority's checkpoint".into(),
    }];
    for i in 0..size {
        let entry = get(&format!("/api/v1/entries/{i}"));
        out.push(Case {
            kind: "tlog-proof",
            proof: get(&format!("/api/v1/tlog-proof/{i}")),
            leaf_hash: (i % 2 == 1).then(|| hex::encode(leaf_hash(&entry))),
            entry,
            log_key: log_key.to_owned(),
            witnesses: vec![],
            quorum: 0,
            what: format!("the authority's tlog-proof of entry {i}"),
        });
    }
    out
}

/// Single-byte and single-field changes of a valid case.
fn mutations(base: &Case, n: usize, rng: &mut Rng, other_key: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let replacements: &[u8] = b"0123456789abcdefABCDEF+/=\n \x00\xc3\xe2-";
    for k in 0..n {
        let mut c = base.clone();
        match k % 10 {
            0..=5 => {
                let i = rng.below(c.proof.len());
                let mut b = replacements[rng.below(replacements.len())];
                if b == c.proof[i] {
                    b ^= 0x01;
                }
                c.proof[i] = b;
                c.what = format!("{}: proof byte {i} set to {b:#04x}", base.what);
            }
            6 => {
                let i = rng.below(c.proof.len());
                c.proof[i] ^= 1 << rng.below(8);
                c.what = format!("{}: one bit of proof byte {i} flipped", base.what);
            }
            7 if c.kind == "tlog-proof" && c.leaf_hash.is_none() => {
                let i = rng.below(c.entry.len());
                c.entry[i] ^= 1 << rng.below(8);
                c.what = format!("{}: one bit of entry byte {i} flipped", base.what);
            }
            7 if c.leaf_hash.is_some() => {
                let mut h = c.leaf_hash.take().unwrap().into_bytes();
                let i = rng.below(h.len());
                h[i] = if h[i] == b'0' { b'1' } else { b'0' };
                c.leaf_hash = Some(String::from_utf8(h).unwrap());
                c.what = format!("{}: leaf hash digit {i} changed", base.what);
            }
            8 => {
                c.quorum = (c.quorum + 1).min(c.witnesses.len());
                if c.quorum == base.quorum {
                    c.log_key = other_key.to_owned();
                    c.what = format!("{}: another log key", base.what);
                } else {
                    c.what = format!("{}: quorum raised to {}", base.what, c.quorum);
                }
            }
            _ => {
                if c.witnesses.is_empty() {
                    // Deleting a byte rather than changing one.
                    let i = rng.below(c.proof.len());
                    c.proof.remove(i);
                    c.what = format!("{}: proof byte {i} deleted", base.what);
                } else {
                    c.witnesses.pop();
                    c.quorum = c.quorum.min(c.witnesses.len());
                    c.what = format!("{}: the last witness key left out", base.what);
                }
            }
        }
        out.push(c);
    }
    out
}

/// The saved viewer, opened by `tests/browser/verdicts.mjs` in Chromium.
struct Viewer<'a> {
    browser: &'a Path,
    chromium: &'a str,
    file: &'a Path,
    dir: &'a Path,
}

/// A case both verifiers judge: the CLI's verdict, a name, and the
/// document the browser is given.
trait Judged {
    fn cli(&self, work: &Path) -> bool;
    fn what(&self) -> &str;
    fn json(&self, expect_valid: bool) -> Value;
}

impl Judged for Case {
    fn cli(&self, work: &Path) -> bool {
        Case::cli(self, work)
    }
    fn what(&self) -> &str {
        &self.what
    }
    fn json(&self, expect_valid: bool) -> Value {
        Case::json(self, expect_valid)
    }
}

impl Judged for LineageCase {
    fn cli(&self, work: &Path) -> bool {
        LineageCase::cli(self, work)
    }
    fn what(&self) -> &str {
        &self.what
    }
    fn json(&self, expect_valid: bool) -> Value {
        LineageCase::json(self, expect_valid)
    }
}

impl Viewer<'_> {
    /// The CLI's verdict on every case (each unchanged one, marked `true`,
    /// must be valid to it), then [`Viewer::agrees`].
    fn holds_to_cli<C: Judged>(&self, cases: &[(C, bool)], bases: usize, shot: &str, kind: &str) {
        let work = self.dir.join("cli");
        std::fs::create_dir_all(&work).unwrap();
        let cli: Vec<bool> = cases.iter().map(|(c, _)| c.cli(&work)).collect();
        for ((c, base), v) in cases.iter().zip(&cli) {
            if *base {
                assert!(v, "{}: the CLI refuses an unchanged proof", c.what());
            }
        }
        let docs: Vec<Value> = cases.iter().map(|(c, base)| c.json(*base)).collect();
        let whats: Vec<&str> = cases.iter().map(|(c, _)| c.what()).collect();
        self.agrees(&docs, &whats, &cli, bases, shot, kind);
    }

    /// The viewer's verdict on every case, held to the CLI's: prints the
    /// counts and fails on any disagreement (and on fewer than 1,000 cases,
    /// or fewer than 900 invalid ones).
    fn agrees(&self, docs: &[Value], whats: &[&str], cli: &[bool], bases: usize, shot: &str, kind: &str) {
        let cases_file = self.dir.join("cases.json");
        std::fs::write(&cases_file, serde_json::to_vec(docs).unwrap()).unwrap();
        let out_file = self.dir.join("verdicts.json");
        let mut cmd = Command::new("node");
        cmd.arg(self.browser.join("verdicts.mjs"))
            .arg(self.file)
            .arg(&cases_file)
            .arg(&out_file)
            .env("CHROMIUM", self.chromium);
        if let Some(shots) = std::env::var_os("MODELGATE_SCREENSHOTS") {
            cmd.arg(PathBuf::from(shots).join(shot));
        }
        let o = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&o.stdout);
        println!("{said}");
        assert!(o.status.success(), "{said}{}", String::from_utf8_lossy(&o.stderr));
        let browser: Vec<Value> = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
        assert_eq!(browser.len(), docs.len());
        let mut disagreements = Vec::new();
        for ((what, cli), b) in whats.iter().zip(cli).zip(&browser) {
            if b["valid"].as_bool() != Some(*cli) {
                disagreements.push(format!(
                    "{what}: CLI says {}, browser says {} ({})",
                    if *cli { "valid" } else { "invalid" },
                    b["valid"],
                    b["reason"]
                ));
            }
        }
        let valid = cli.iter().filter(|v| **v).count();
        println!(
            "{} {kind}cases ({bases} bases): {valid} valid, {} invalid, {} disagreements",
            docs.len(),
            docs.len() - valid,
            disagreements.len()
        );
        assert!(docs.len() >= 1000, "{} cases", docs.len());
        assert!(
            valid >= bases && docs.len() - valid >= 900,
            "{valid} valid of {}",
            docs.len()
        );
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    }
}

#[test]
fn the_saved_viewer_and_the_cli_agree_on_every_proof() {
    let (browser, chromium) = common::browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let authority = common::dev_serve(&dev);
    let url = authority.url.clone();

    // The viewer exactly as a person downloads it.
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut resp = agent.get(&format!("{url}/proof/viewer.html")).call().unwrap();
    assert!(resp
        .headers()
        .get("content-disposition")
        .is_some_and(|v| v.to_str().unwrap().contains("attachment")));
    let html = resp.body_mut().read_to_string().unwrap();
    let viewer = dir.path().join("modelgate-proof-viewer.html");
    std::fs::write(&viewer, &html).unwrap();
    let state = common::world::get_json(&format!("{url}/api/v1/trust-root"));
    let log_key = state["authority"]["log"]
        .as_str()
        .or_else(|| state["doc"]["authority"]["log"].as_str())
        .unwrap_or_else(|| panic!("no log key in {state}"))
        .to_owned();
    assert!(
        html.contains(&log_key),
        "the saved viewer is prefilled with the log key"
    );

    let mut rng = Rng(0x005e_ed0f_7e57);
    let key = |name: &str, t: KeyType, seed: u8| SignerKey::from_seed(name, t, &[seed; 32]).unwrap();
    let log = key("example.org/log", KeyType::Ed25519, 1);
    let w1 = key("witness-1.example", KeyType::CosignatureV1, 2);
    let w2 = key("witness-2.example", KeyType::CosignatureV1, 3);
    let stranger = key("example.org/log", KeyType::Ed25519, 9).verifier().to_string();
    let mut bases = from_authority(&url, &log_key);
    bases.extend(synthetic(1, &log, &[], 0, &mut rng));
    bases.extend(synthetic(7, &log, std::slice::from_ref(&w1), 1, &mut rng));
    bases.extend(synthetic(64, &log, &[w1.clone(), w2.clone()], 2, &mut rng));
    bases.extend(synthetic(1000, &log, &[w1, w2], 1, &mut rng));
    let per = 1100usize.div_ceil(bases.len());
    let mut cases: Vec<(Case, bool)> = Vec::new();
    for b in &bases {
        cases.push((b.clone(), true));
        for m in mutations(b, per, &mut rng, &stranger) {
            cases.push((m, false));
        }
    }
    let run = Viewer {
        browser: &browser,
        chromium: &chromium,
        file: &viewer,
        dir: dir.path(),
    };
    run.holds_to_cli(&cases, bases.len(), "proof-viewer.png", "");
}

/// A lineage proof and the trust root it is checked against.
#[derive(Clone)]
struct LineageCase {
    proof: Vec<u8>,
    trust_root: Vec<u8>,
    full: bool,
    what: String,
}

impl LineageCase {
    fn json(&self, expect_valid: bool) -> Value {
        json!({
            "kind": "lineage",
            "proof": B64.encode(&self.proof),
            "trust_root": B64.encode(&self.trust_root),
            "full": self.full,
            "expect_valid": expect_valid,
        })
    }

    /// `modelgate lineage verify`'s verdict: exit 0 is valid; 1 and 2 are not.
    fn cli(&self, dir: &Path) -> bool {
        let proof = dir.join("proof.json");
        let root = dir.join("trust-root.dsse.json");
        std::fs::write(&proof, &self.proof).unwrap();
        std::fs::write(&root, &self.trust_root).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["lineage", "verify", s(&proof), "--trust-root", s(&root)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        match o.status.code() {
            Some(0) => true,
            Some(1 | 2) => false,
            other => panic!("{}: the CLI exited {other:?}", self.what),
        }
    }
}

/// Every JSON pointer in `v`, the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (k, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// The case's proof is now `d`; says what changed.
fn refield(c: &mut LineageCase, d: &Value, base: &str, what: String) -> String {
    c.proof = serde_json::to_vec_pretty(d).unwrap();
    format!("{base}: {what}")
}

/// Single-byte and single-field changes of a valid lineage proof: bytes
/// replaced, flipped or deleted; a field removed, nulled, changed, added; one
/// governed entry in another's place or from another proof; the format
/// swapped; a byte of the trust root changed.
fn lineage_mutations(base: &LineageCase, n: usize, rng: &mut Rng, foreign: &[Value]) -> Vec<LineageCase> {
    let doc: Value = serde_json::from_slice(&base.proof).unwrap();
    let mut paths = Vec::new();
    pointers(&doc, String::new(), &mut paths);
    let governed: Vec<&str> = [
        "/proof/anchor",
        "/proof/enrollment",
        "/proof/governance/trust_root",
        "/proof/governance/registration",
        "/proof/governance/grant",
        "/proof/governance/policy",
    ]
    .into_iter()
    .filter(|p| doc.pointer(p).is_some())
    .collect();
    let replacements: &[u8] = b"0123456789abcdefABCDEF+/=\n \"{}[],:.-eE\\\x00\xc3";
    let mut out = Vec::new();
    for k in 0..n {
        let mut c = base.clone();
        let mut d = doc.clone();
        c.what = match k % 13 {
            0..=3 => {
                let i = rng.below(c.proof.len());
                let mut b = replacements[rng.below(replacements.len())];
                if b == c.proof[i] {
                    b ^= 0x01;
                }
                c.proof[i] = b;
                format!("{}: proof byte {i} set to {b:#04x}", base.what)
            }
            4 => {
                let i = rng.below(c.proof.len());
                c.proof[i] ^= 1 << rng.below(8);
                format!("{}: one bit of proof byte {i} flipped", base.what)
            }
            5 => {
                let i = rng.below(c.proof.len());
                c.proof.remove(i);
                format!("{}: proof byte {i} deleted", base.what)
            }
            6 => {
                let p = &paths[rng.below(paths.len())];
                let (parent, key) = p.rsplit_once('/').unwrap_or(("", ""));
                match d.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(a)) if !a.is_empty() => {
                        a.remove(key.parse::<usize>().unwrap_or(0).min(a.len() - 1));
                    }
                    _ => {}
                }
                refield(&mut c, &d, &base.what, format!("{p} removed"))
            }
            7 => {
                let p = paths[rng.below(paths.len())].clone();
                let v = d.pointer_mut(&p).unwrap();
                let was = v.to_string();
                *v = match v.take() {
                    Value::Number(x) => json!(x.as_u64().map_or(1, |x| x + 1 + rng.below(3) as u64)),
                    Value::Bool(b) => json!(!b),
                    Value::String(t) if t.is_empty() => json!("x"),
                    Value::String(t) => {
                        let mut b = t.into_bytes();
                        let i = rng.below(b.len());
                        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                        json!(String::from_utf8_lossy(&b))
                    }
                    Value::Null => json!(0),
                    _ => Value::Null,
                };
                let what = format!("{p} changed from {}", &was[..was.len().min(40)]);
                refield(&mut c, &d, &base.what, what)
            }
            8 => {
                let objects: Vec<&String> = paths
                    .iter()
                    .filter(|p| doc.pointer(p).is_some_and(Value::is_object))
                    .collect();
                let p = objects[rng.below(objects.len())].clone();
                d.pointer_mut(&p).unwrap()["note"] = json!("unchecked");
                refield(&mut c, &d, &base.what, format!("an unknown field in {p:?}"))
            }
            9 if governed.len() > 1 => {
                let a = governed[rng.below(governed.len())];
                let mut b = governed[rng.below(governed.len())];
                if a == b {
                    b = governed[(governed.iter().position(|x| *x == a).unwrap() + 1) % governed.len()];
                }
                let va = d.pointer(a).unwrap().clone();
                *d.pointer_mut(b).unwrap() = va;
                refield(&mut c, &d, &base.what, format!("{a} in the place of {b}"))
            }
            10 => match rng.below(3) {
                0 => {
                    let to = if base.full {
                        "modelgate-lineage-proof/v1"
                    } else {
                        "modelgate-lineage-proof/v2"
                    };
                    d["format"] = json!(to);
                    refield(&mut c, &d, &base.what, format!("format set to {to}"))
                }
                1 => {
                    let n = d["proof"]["records"].as_array().map_or(0, Vec::len);
                    let i = rng.below(n.max(1));
                    let idx = d["proof"]["records"][i]["index"].as_u64().unwrap_or(0);
                    d["proof"]["records"][i]["index"] = json!(idx + 1);
                    refield(&mut c, &d, &base.what, format!("record {i}'s index moved"))
                }
                _ => {
                    d["records"][0]["record"]["scope"] = json!("prod/credit/other");
                    refield(&mut c, &d, &base.what, "the readable copy's scope changed".into())
                }
            },
            11 if !foreign.is_empty() && !governed.is_empty() => {
                let a = governed[rng.below(governed.len())];
                let other = &foreign[rng.below(foreign.len())];
                *d.pointer_mut(a).unwrap() = other.clone();
                refield(&mut c, &d, &base.what, format!("{a} from another proof"))
            }
            _ => {
                let i = rng.below(c.trust_root.len());
                c.trust_root[i] ^= 1 << rng.below(8);
                format!("{}: one bit of trust-root byte {i} flipped", base.what)
            }
        };
        out.push(c);
    }
    out
}

#[test]
fn the_saved_viewer_and_the_cli_agree_on_every_lineage_proof() {
    use common::world::{agent, approved_node, call, caller_table, chat, eventually, start_gateway, wait_for, world};
    const TOKEN: &str = "differential-caller-secret";
    const AUDITOR: &str = "differential-auditor-secret";
    let (browser, chromium) = common::browser_tools();
    let w = world();
    let url = w.server.url.clone();
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\nlineage_replication_interval_seconds = 1\n{}{}lineage = \"all\"\n",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"]),
            caller_table("auditor", AUDITOR, &[], &[])
        ),
    );
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    let id = |h: &ureq::http::HeaderMap| -> u64 { h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap() };
    let mut calls = Vec::new();
    for k in 0..4 {
        let (st, h, body) = call(&g.url, Some(TOKEN), None, &chat(k % 2 == 1));
        assert_eq!(st, 200, "{body}");
        calls.push((id(&h), "a call"));
    }
    let (st, h, _) = call(&g.url, Some(TOKEN), Some("prod/other"), &chat(false));
    assert_eq!(st, 403);
    calls.push((id(&h), "a denial (scope)"));
    let (st, h, _) = call(&g.url, Some("not-a-caller"), None, &chat(false));
    assert_eq!(st, 401);
    if let Some(v) = h.get("x-modelgate-lineage-id") {
        calls.push((v.to_str().unwrap().parse().unwrap(), "a denial (unknown caller)"));
    }

    // Each call's proof as the node serves it (v1) and as the authority
    // serves it (v2, the full chain), once anchored and replicated.
    let trust_root = std::fs::read(w.data.join("trust-root.dsse.json")).unwrap();
    let mut bases = Vec::new();
    for (i, what) in &calls {
        let (v1, _) = eventually(30, "the node's proof is anchored", || {
            let mut r = agent()
                .get(&format!("{}/lineage/{i}", g.url))
                .header("Authorization", &format!("Bearer {AUDITOR}"))
                .call()
                .ok()?;
            let text = r.body_mut().read_to_vec().ok()?;
            let v: Value = serde_json::from_slice(&text).ok()?;
            (v["anchored"] == true).then_some(text)
        });
        let (v2, _) = eventually(30, "the authority serves the full chain", || {
            let mut r = agent().get(&format!("{url}/lineage/node-1/{i}/proof")).call().ok()?;
            (r.status().as_u16() == 200).then(|| r.body_mut().read_to_vec().unwrap())
        });
        for (proof, full) in [(v1, false), (v2, true)] {
            bases.push(LineageCase {
                proof,
                trust_root: trust_root.clone(),
                full,
                what: format!("{} proof of {what} ({i})", if full { "full-chain" } else { "node" }),
            });
        }
    }
    // Governed entries of other proofs, to put in a proof's place.
    let foreign: Vec<Value> = bases
        .iter()
        .flat_map(|b| {
            let d: Value = serde_json::from_slice(&b.proof).unwrap();
            [
                "/proof/anchor",
                "/proof/governance/grant",
                "/proof/governance/registration",
            ]
            .iter()
            .filter_map(|p| d.pointer(p).cloned())
            .collect::<Vec<_>>()
        })
        .collect();

    let mut rng = Rng(0x0114_ea9e);
    let per = 1100usize.div_ceil(bases.len());
    let mut cases: Vec<(LineageCase, bool)> = Vec::new();
    for b in &bases {
        cases.push((b.clone(), true));
        for m in lineage_mutations(b, per, &mut rng, &foreign) {
            cases.push((m, false));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    // The viewer exactly as a person downloads it from this console.
    let html = common::world::get_text(&format!("{url}/proof/viewer.html"));
    let viewer = dir.path().join("modelgate-proof-viewer.html");
    std::fs::write(&viewer, &html).unwrap();
    let run = Viewer {
        browser: &browser,
        chromium: &chromium,
        file: &viewer,
        dir: dir.path(),
    };
    run.holds_to_cli(&cases, bases.len(), "proof-viewer-lineage.png", "lineage ");
}
