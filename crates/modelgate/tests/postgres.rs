//! The authority on PostgreSQL, with real processes and a real server
//! (MODELGATE_POSTGRES_URL, set by scripts/test.sh; missing, this fails):
//! `authority serve --store postgres://…` initialises the log in the
//! database and governs as on SQLite (trust-root rotation, a signed model
//! registered, an approval); `log audit` of the database passes; a second
//! authority on the same database is refused while the first one's lease
//! runs — also after the first is killed with SIGKILL, until the lease
//! expires — and then takes over with every entry; a database that holds a
//! log is never initialised again; a `pg_dump` of it restored into another
//! database audits clean.
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
    std::env::remove_var("MODELGATE_STORE");
}
