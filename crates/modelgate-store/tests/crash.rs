//! Crash safety: a child process appends under load (8 submitters through
//! the sequencer) and is SIGKILLed at a random moment, 24 times, restarted
//! on the same database each time. Every append acknowledged before a kill
//! must be present at its index afterwards, and the audit must pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modelgate_store::*;
use modelgate_tlog::*;

const TRIALS: u64 = 24;

/// A small deterministic generator, so a failing trial can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let key = SignerKey::from_seed("torture.example/log", KeyType::Ed25519, &[5; 32]).unwrap();
    let policy = CheckpointPolicy::new(key.verifier(), vec![], 0).unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut rng = 0x5eed_u64;
    let started = Instant::now();
    for trial in 0..TRIALS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate-store-torture"))
            .args([db.to_str().unwrap(), "8", &format!("run{trial}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        // Kill between 20 and 270 ms after start: sometimes before the first
        // append, usually mid-batch.
        std::thread::sleep(Duration::from_millis(20 + next(&mut rng) % 250));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "trial {trial}: the child exited by itself: {status:?}"
        );
        let lines = reader.join().unwrap();
        let mut new = 0;
        for l in lines.iter().filter(|l| *l != "ready") {
            let (index, entry) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("trial {trial}: bad line {l:?}"));
            let index: u64 = index.parse().unwrap();
            assert!(
                acked.insert(index, entry.to_owned()).is_none(),
                "index {index} acknowledged twice"
            );
            new += 1;
        }

        // Restart on the same file: the lock is free (the kernel dropped it
        // with the process), every acknowledged entry is there, audit passes.
        let store = SqliteStore::open(&db).unwrap_or_else(|e| panic!("trial {trial}: reopen: {e}"));
        let size = store.size().unwrap();
        if let Some((&last, _)) = acked.last_key_value() {
            assert!(
                size > last,
                "trial {trial}: size {size} but index {last} was acknowledged"
            );
        }
        let stored = store.entries(0, size).unwrap();
        for (&i, e) in &acked {
            assert_eq!(stored[i as usize], e.as_bytes(), "trial {trial}: entry {i}");
        }
        let report = audit(&store, &policy).unwrap_or_else(|e| panic!("trial {trial}: audit: {e}"));
        assert_eq!(report.entries, size);
        Log::open(store, key.clone()).unwrap_or_else(|e| panic!("trial {trial}: log reopen: {e}"));
        eprintln!("trial {trial}: {new} acknowledged this run, {size} stored");
    }
    assert!(
        acked.len() > 500,
        "only {} appends acknowledged in all trials: the load did not run",
        acked.len()
    );
    eprintln!(
        "{TRIALS} kills, {} acknowledged appends checked, {:?}",
        acked.len(),
        started.elapsed()
    );
}
