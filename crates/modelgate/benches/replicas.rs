//! Authority submissions per second with two authorities on one PostgreSQL
//! database (a sequencer and a replica that passes writes on), against one
//! authority on SQLite and one alone on PostgreSQL, in the same run: 64
//! keep-alive clients submit signed approvals (checked, durable,
//! acknowledged) for MODELGATE_BENCH_SECS (default 10) per case.
//!
//! `cargo bench -p modelgate --bench replicas` against
//! MODELGATE_POSTGRES_URL, or a throwaway cluster `scripts/postgres.sh`
//! starts.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::s;
use support::{agent, drive, Run, CLIENTS};

/// 64 clients for `secs`, client `c` submitting to `targets[c % len]`;
/// every entry signed before the clock starts.
fn submissions(secs: f64, targets: &[String], admin: &str, entries: Vec<Vec<Vec<u8>>>) -> Run {
    let pools: Arc<Vec<Mutex<Vec<Vec<u8>>>>> = Arc::new(entries.into_iter().map(Mutex::new).collect());
    let agents: Arc<Vec<ureq::Agent>> = Arc::new((0..CLIENTS).map(|_| agent()).collect());
    let (targets, admin) = (targets.to_vec(), admin.to_owned());
    drive(
        secs,
        Arc::new(move |c: usize, _n: u64| {
            let Some(body) = pools[c].lock().unwrap().pop() else {
                return false;
            };
            let url = &targets[c % targets.len()];
            let r = agents[c]
                .post(&format!("{url}/api/v1/entries"))
                .header("Content-Type", "application/json")
                .header("Authorization", &format!("Bearer {admin}"))
                .send(&body[..]);
            matches!(r, Ok(ref resp) if resp.status().as_u16() == 201)
        }),
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let server = modelgate_testkit::postgres::Server::or_start();
    let root =
        tempfile::tempdir_in(std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    // Enough entries per client for any case at the rates seen here.
    let per_client = (secs * 150.0) as usize;
    let batch = |g: &support::Governed, tag: &str| -> Vec<Vec<Vec<u8>>> {
        (0..CLIENTS)
            .map(|c| {
                (0..per_client)
                    .map(|n| g.approver.approval(&format!("{tag}-{c}-{n}-{}", "x".repeat(40))))
                    .collect()
            })
            .collect()
    };

    // Baseline: one authority on SQLite.
    std::env::remove_var("MODELGATE_STORE");
    let d = root.path().join("sqlite");
    std::fs::create_dir_all(&d).unwrap();
    let g = support::governed(&d);
    let sqlite = submissions(secs, std::slice::from_ref(&g.url), &g.admin, batch(&g, "S"));
    drop(g);

    // One database, one authority, then a second one beside it.
    let db = server.database("mg_bench_replicas");
    std::env::set_var("MODELGATE_STORE", &db);
    let d = root.path().join("postgres");
    std::fs::create_dir_all(&d).unwrap();
    let g = support::governed(&d);
    let alone = submissions(secs, std::slice::from_ref(&g.url), &g.admin, batch(&g, "A"));
    let other = d.join("replica");
    common::copy_dir(&g.data, &other);
    let replica = common::spawn_server(&["authority", "serve", "--data", s(&other), "--listen", "127.0.0.1:0"]);
    let both = [g.url.clone(), replica.url.clone()];
    let to_sequencer = submissions(secs, &both[..1], &g.admin, batch(&g, "Q"));
    let split = submissions(secs, &both, &g.admin, batch(&g, "B"));
    let to_replica = submissions(secs, &both[1..], &g.admin, batch(&g, "R"));
    std::env::remove_var("MODELGATE_STORE");

    println!("| case ({CLIENTS} clients, signed approvals) | submissions/s | p50 ms | p99 ms | acknowledged |");
    println!("|---|---|---|---|---|");
    for (what, r) in [
        ("baseline: one authority on SQLite", &sqlite),
        ("one authority on PostgreSQL", &alone),
        ("two on PostgreSQL, all to the sequencer", &to_sequencer),
        ("two on PostgreSQL, half to each (the replica passes on)", &split),
        ("two on PostgreSQL, all to the replica", &to_replica),
    ] {
        println!(
            "| {what} | {:.0} | {:.2} | {:.2} | {} |",
            r.per_sec, r.p50_ms, r.p99_ms, r.count
        );
    }
    drop(replica);
    drop(g);
}
