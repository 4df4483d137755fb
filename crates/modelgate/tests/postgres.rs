//! The authority on PostgreSQL, with real processes and a real server
//! (MODELGATE_POSTGRES_URL, set by scripts/test.sh; missing, this fails):
//! `authority serve --store postgres://…` initialises the log in the
//! database and governs as on SQLite (trust-root rotation, a signed model
//! registered, an approval); `log audit` of the database passes; a second
//! authority on the same database is refused while the first one's lease
//! runs — also after the first is killed with SIGKILL, until the lease
//! expires — and then takes over with every entry; a database that holds a
//! log is never initialised again; a `pg_dump` of it restored into another
//! database audits clean. Then the sequencer is killed with SIGKILL thirty
//! times at random moments under concurrent submissions, the other
//! authority taking over each time: every acknowledged entry is at its
//! acknowledged index, no index is acknowledged twice, the audit passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{mg, s};

fn server() -> String {
    std::env::var("MODELGATE_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "MODELGATE_POSTGRES_URL is not set: this test needs a PostgreSQL server \
             (scripts/test.sh starts one with scripts/postgres.sh)"
        )
    })
}

fn database(admin: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}

fn log_key(url: &str) -> String {
    let v = common::world::get_json(&format!("{url}/api/v1/trust-root"));
    v["authority"]["log"]
        .as_str()
        .or_else(|| v["doc"]["authority"]["log"].as_str())
        .unwrap()
        .to_owned()
}

fn size(url: &str) -> u64 {
    common::world::get_text(&format!("{url}/log/checkpoint"))
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_authority_on_postgresql_governs_audits_and_hands_over() {
    let admin = server();
    let db = database(&admin, "mg_authority_test");
    // Every authority this test starts (the world's included) uses the database.
    std::env::set_var("MODELGATE_STORE", &db);
    let mut w = common::world::world();
    common::world::approve_and_permit(&w);
    let url = w.server.url.clone();
    let log = log_key(&url);
    let n = size(&url);
    assert!(n >= 5, "trust roots v1 and v2, a model, an approval, a policy set: {n}");
    assert!(
        !w.data.join("governance.db").exists(),
        "the log went to PostgreSQL, not SQLite"
    );

    // The offline audit of the database, beside the running authority.
    let out = common::ok(&mg(&["log", "audit", &db, "--vkey", &log]));
    assert!(
        out.contains("store: intact") && out.contains(&format!("entries: {n}")),
        "{out}"
    );

    // A second authority on the same database: refused while the lease runs.
    let other = w.dir.path().join("other");
    common::copy_dir(&w.data, &other);
    let o = mg(&["authority", "serve", "--data", s(&other), "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("held by"), "{}", common::stderr(&o));

    // The first killed with SIGKILL: its lease runs out, then the second takes over.
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    let killed = Instant::now();
    let second = loop {
        // Refused (exit 2, the lease held) until the dead one's lease runs out.
        if let Some(s) = common::try_server(&["authority", "serve", "--data", s(&other), "--listen", "127.0.0.1:0"]) {
            break s;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no takeover");
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = killed.elapsed();
    println!("the second authority serves {took:?} after the first was killed with SIGKILL");
    assert!(took < Duration::from_secs(6), "takeover took {took:?}");
    assert_eq!(size(&second.url), n, "every entry is there");
    w.server = second;
    common::world::approve_and_permit(&w);
    assert!(size(&w.server.url) > n);

    // A database that holds a log is never initialised again.
    let o = mg(&[
        "authority",
        "init",
        "--data",
        s(&w.dir.path().join("again")),
        "--origin",
        "again.example/gov",
        "--store",
        &db,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("already holds a log"),
        "{}",
        common::stderr(&o)
    );

    // Backup and restore with pg_dump: the restored database audits clean.
    let dump = w.dir.path().join("governance.sql");
    let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin"))
        .max()
        .unwrap();
    let st = Command::new(pg_bin.join("pg_dump"))
        .args(["--dbname", &db, "--file", s(&dump)])
        .status()
        .unwrap();
    assert!(st.success());
    let restored = database(&admin, "mg_authority_restored");
    let st = Command::new(pg_bin.join("psql"))
        .args(["--quiet", "--dbname", &restored, "--file", s(&dump)])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = common::ok(&mg(&["log", "audit", &restored, "--vkey", &log]));
    assert!(out.contains("store: intact"), "{out}");

    kill_thirty_times(&mut w, &other, &db, &log);
    std::env::remove_var("MODELGATE_STORE");
}

/// SIGKILL the sequencer at random moments while four clients submit; the
/// other authority takes over each time (the test is their supervisor).
fn kill_thirty_times(w: &mut common::world::World, other: &std::path::Path, db: &str, log: &str) {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use sha2::Digest as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const KILLS: usize = 30;
    const CLIENTS: usize = 4;
    let alice =
        ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(w.dir.path().join("alice.key")).unwrap())
            .unwrap();
    let digest = w.digest.clone();
    let admin = w.admin.clone();
    let entry = Arc::new(move |c: usize, k: usize| {
        let v = serde_json::json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/*"],
            "valid_from": 0, "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": format!("KILL-{c}-{k}")});
        modelgate_governance::Envelope::sign(&modelgate_governance::to_canonical(&v).unwrap(), &[&alice]).unwrap()
    });
    let current = Arc::new(Mutex::new(w.server.url.clone()));
    // (acknowledged index, SHA-256 of the entry submitted)
    type Acked = Vec<(u64, [u8; 32])>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (current, acked, stop, admin, entry) = (
                Arc::clone(&current),
                Arc::clone(&acked),
                Arc::clone(&stop),
                admin.clone(),
                Arc::clone(&entry),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                // A new entry for every attempt: one that was not acknowledged
                // may be in the log or not, and is never counted.
                for k in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let e = entry(c, k);
                    let url = current.lock().unwrap().clone();
                    let r = agent
                        .post(&format!("{url}/api/v1/entries"))
                        .header("Content-Type", "application/json")
                        .header("Authorization", &format!("Bearer {admin}"))
                        .send(&e[..]);
                    match r {
                        Ok(mut r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value =
                                serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                            let index = v["index"].as_u64().unwrap();
                            acked.lock().unwrap().push((index, sha2::Sha256::digest(&e).into()));
                        }
                        // Not acknowledged (killed, taking over, busy): it may or may not be in the log.
                        _ => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
        })
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut dirs = [w.data.clone(), other.to_path_buf()];
    let mut takeovers = Vec::new();
    let mut last = 0;
    for k in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 1300));
        let before = acked.lock().unwrap().len();
        if k > 0 {
            assert!(
                before > last,
                "kill {k}: no entry acknowledged since the last takeover (no load)"
            );
        }
        last = before;
        let _ = w.server.child.kill();
        let _ = w.server.child.wait();
        let killed = Instant::now();
        dirs.swap(0, 1);
        let next = loop {
            if let Some(s) =
                common::try_server(&["authority", "serve", "--data", s(&dirs[0]), "--listen", "127.0.0.1:0"])
            {
                break s;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "kill {k}: no takeover");
            std::thread::sleep(Duration::from_millis(100));
        };
        takeovers.push(killed.elapsed());
        *current.lock().unwrap() = next.url.clone();
        w.server = next;
        println!(
            "kill {k}: {} acknowledged before it, takeover {:?}",
            before, takeovers[k]
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let mut c = postgres::Client::connect(db, postgres::NoTls).unwrap();
    let stored: std::collections::HashMap<i64, Vec<u8>> = c
        .query("SELECT idx, data FROM entries", &[])
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (index, hash) in &acked {
        assert!(seen.insert(*index), "index {index} acknowledged twice");
        let e = stored
            .get(&(*index as i64))
            .unwrap_or_else(|| panic!("acknowledged entry {index} is gone"));
        let h: [u8; 32] = sha2::Sha256::digest(e).into();
        assert_eq!(&h, hash, "entry {index} is not the one acknowledged there");
    }
    let out = common::ok(&mg(&["log", "audit", db, "--vkey", log]));
    assert!(out.contains("store: intact"), "{out}");
    takeovers.sort();
    println!(
        "{KILLS} SIGKILLs under load: {} entries acknowledged, all at their index; {} in the log; takeover p50 {:?}, max {:?}",
        acked.len(),
        stored.len(),
        takeovers[KILLS / 2],
        takeovers[KILLS - 1]
    );
    assert!(
        acked.len() > 100 * KILLS,
        "too few acknowledged entries to mean anything: {}",
        acked.len()
    );
}
