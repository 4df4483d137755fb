//! Test tool for the crash tests: append to a log under load and print each
//! acknowledged entry, until killed.
//!
//! Usage: `modelgate-store-torture DB SUBMITTERS RUN`. Each submitter thread
//! appends `RUN-T-N` entries through the sequencer; after each receipt the
//! line `INDEX ENTRY` is written to stdout and flushed, so whoever kills the
//! process knows exactly which appends were acknowledged before the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use modelgate_store::{Log, Sequencer, SequencerConfig, SqliteStore, SubmitError};
use modelgate_tlog::{KeyType, SignerKey};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: modelgate-store-torture DB SUBMITTERS RUN");
        std::process::exit(2);
    }
    let submitters: usize = args[2].parse().expect("SUBMITTERS is a number");
    let run = args[3].clone();
    let key = SignerKey::from_seed("torture.example/log", KeyType::Ed25519, &[5; 32]).unwrap();
    let store = SqliteStore::open(Path::new(&args[1])).unwrap_or_else(|e| {
        eprintln!("open: {e}");
        std::process::exit(1)
    });
    let log = Log::open(store, key).unwrap_or_else(|e| {
        eprintln!("log: {e}");
        std::process::exit(1)
    });
    let config = SequencerConfig {
        max_batch: 64,
        ..SequencerConfig::default()
    };
    let seq = Arc::new(Sequencer::start(log, config).unwrap());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    println!("ready");
    let threads: Vec<_> = (0..submitters)
        .map(|t| {
            let seq = Arc::clone(&seq);
            let out = Arc::clone(&out);
            let run = run.clone();
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let entry = format!("{run}-{t}-{n}");
                    match seq.submit(entry.clone().into_bytes()) {
                        Ok(r) => {
                            let mut o = out.lock().unwrap();
                            writeln!(o, "{} {entry}", r.index).unwrap();
                            o.flush().unwrap();
                        }
                        Err(SubmitError::Busy(_)) => std::thread::yield_now(),
                        Err(e) => {
                            eprintln!("submit: {e}");
                            std::process::exit(1);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
