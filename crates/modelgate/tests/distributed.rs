//! Distributed trust with real processes: one authority, three witnesses
//! (`modelgate witness serve`), three nodes (`modelgate node serve`) that
//! compare checkpoints with each other.
//!
//! - With a witness quorum of 2 the nodes sync end to end; a witness killed
//!   with SIGKILL and restarted keeps refusing rollbacks; a node cut from the
//!   authority (a TCP proxy that stops forwarding) contains alone, after its
//!   staleness bound, and serves again once the link is back; a forked
//!   authority (a copy of the authority's data, same log key, another
//!   history) gets no cosignature and no node trusts its history.
//! - With a quorum of 0 the same fork is caught by the peer exchange: every
//!   node that sees both histories contains with CoordinationInconsistent and
//!   writes evidence that `modelgate log verify-split-view` proves offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::world::{
    agent, approve_and_permit, call, chat, checkpoint_size, free_port, log_key, node, peer_checkpoint,
    start_gateway_at, wait_for, world, Gateway, Proxy, World,
};
use common::{mg, mg_line, ok, s};
use serde_json::Value;

const TOKEN: &str = common::world::NODE_CALLER_TOKEN;

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A witness process (killed on drop).
struct Witness {
    server: common::Server,
    url: String,
    data: PathBuf,
    vkey: String,
}

fn serve_witness(data: &Path, listen: &str, log: &str) -> common::Server {
    common::spawn_json_server(&["witness", "serve", "--data", s(data), "--listen", listen, "--log", log])
}

fn witness(dir: &Path, n: usize, log: &str) -> Witness {
    let data = dir.join(format!("witness-{n}"));
    let vkey = ok(&mg(&[
        "witness",
        "init",
        "--data",
        s(&data),
        "--name",
        &format!("witness-{n}.example"),
    ]))
    .trim()
    .to_owned();
    let server = serve_witness(&data, "127.0.0.1:0", log);
    let url = server.url.clone();
    Witness {
        server,
        url,
        data,
        vkey,
    }
}

/// The world's authority, stopped and started again on the same address
/// with these arguments added.
fn restart_authority(w: &mut World, data: &Path, extra: &[&str]) {
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    let listen = w.server.url.trim_start_matches("http://").to_owned();
    let mut args = vec!["authority", "serve", "--data", s(data), "--listen", &listen];
    args.extend_from_slice(extra);
    let server = common::spawn_server(&args);
    assert_eq!(server.url, w.server.url);
    w.server = server;
}

/// Another authority from a copy of `data` (same keys, same history so far).
fn fork_authority(w: &mut World, extra: &[&str]) -> common::Server {
    let data = w.data.clone();
    let copy = w.dir.path().join("authority-fork");
    // Stopped first: the copy is of a store nobody is writing.
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    common::copy_dir(&data, &copy);
    restart_authority(w, &data, extra);
    let mut args = vec!["authority", "serve", "--data", s(&copy), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    common::spawn_server(&args)
}

/// Alice approves the world's model once more (an entry that changes nothing the nodes serve).
fn approve_again(w: &World, authority: &str, ticket: &str) {
    ok(&mg_line(&format!(
        "approve {} --scope prod/credit/* --until +1d --tier low --ticket {ticket} --key {} --authority {authority} --token {}",
        w.digest,
        s(&w.dir.path().join("alice.key")),
        w.admin
    )));
}

fn contained(g: &Gateway, reason: &str, secs: u64) -> Value {
    wait_for(&g.events, secs, reason, |v| {
        v["state"] == "Contained" && v["reason"] == reason
    })
}

fn post_witness(url: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent().post(&format!("{url}/add-checkpoint")).send(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn a_forked_authority_is_caught_by_the_peer_exchange_on_every_node() {
    let mut w = world();
    approve_and_permit(&w);
    let log = log_key(&w.server.url);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    // Node 3 reaches its authority through a proxy the test will turn to the fork.
    let to_three = Proxy::start(addr(&w.server.url));
    let a = w.server.url.clone();
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let peers: Vec<String> = (0..3).filter(|j| *j != i).map(|j| urls[j].clone()).collect();
            node(&w, i + 1, if i == 2 { &to_three.url } else { &a }, &peers, 30)
        })
        .collect();
    let nodes: Vec<Gateway> = (0..3)
        .map(|i| start_gateway_at(&configs[i], &format!("127.0.0.1:{}", ports[i])))
        .collect();
    for g in &nodes {
        wait_for(&g.events, 30, "Serving", |v| v["state"] == "Serving");
    }
    for g in &nodes {
        assert_eq!(call(&g.url, Some(TOKEN), None, &chat(false)).0, 200);
    }

    // The fork: a copy of the authority with the same key serves node 3.
    let b = fork_authority(&mut w, &[]);
    to_three.set(Some(addr(&b.url)));
    let forked = Instant::now();
    approve_again(&w, &a, "CHG-A");
    approve_again(&w, &b.url, "CHG-B1");
    approve_again(&w, &b.url, "CHG-B2");
    let mut took = Vec::new();
    for (i, g) in nodes.iter().enumerate() {
        let e = contained(g, "CoordinationInconsistent", 30);
        took.push(forked.elapsed());
        println!(
            "node-{}: contained after {:?}: {}",
            i + 1,
            forked.elapsed(),
            e["detail"]
        );
        assert!(e["detail"].as_str().unwrap().contains("split view"), "{e}");
    }
    println!(
        "fork to containment on every node: {} ms",
        took.iter().max().unwrap().as_millis()
    );
    for g in &nodes {
        let (st, _, body) = call(&g.url, Some(TOKEN), None, &chat(false));
        assert_ne!(st, 200, "a node serves after a split view: {body}");
    }

    // The evidence proves itself offline, with the log key alone.
    for n in 1..=3 {
        let dir = w.dir.path().join(format!("node-{n}-data/split-view"));
        let file = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .next()
            .unwrap()
            .path();
        let o = mg(&["log", "verify-split-view", s(&file), "--vkey", &log]);
        let said = ok(&o);
        assert!(said.contains("split view"), "{said}");
        if n == 1 {
            println!("node-1's evidence: {said}");
            // Doctored evidence proves nothing: the second checkpoint replaced by the first.
            let mut e: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            e["checkpoints"][1] = e["checkpoints"][0].clone();
            e["consistency"] = serde_json::json!([]);
            e.as_object_mut().unwrap().remove("implied_root");
            let doctored = w.dir.path().join("doctored.json");
            std::fs::write(&doctored, serde_json::to_vec(&e).unwrap()).unwrap();
            let o = mg(&["log", "verify-split-view", s(&doctored), "--vkey", &log]);
            assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
            // Another log's key: not its signatures.
            let other = ok(&mg(&[
                "log",
                "keygen",
                "other.example/log",
                "--out",
                s(&w.dir.path().join("other")),
            ]));
            let o = mg(&["log", "verify-split-view", s(&file), "--vkey", other.trim()]);
            assert_ne!(o.status.code(), Some(0));
        }
    }
    // Contained, a node compares no more: one evidence file per fork, however
    // many peer intervals pass, and `node status` applies the same rule.
    std::thread::sleep(std::time::Duration::from_secs(4));
    for n in 1..=3 {
        let dir = w.dir.path().join(format!("node-{n}-data/split-view"));
        let files = std::fs::read_dir(&dir).unwrap().flatten().count();
        assert_eq!(files, 1, "node-{n} keeps {files} evidence files");
    }
    drop(nodes);
    let o = mg(&["node", "status", "--config", s(&configs[0])]);
    let said = common::stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("Contained CoordinationInconsistent"), "{said}");
    // Still contained after a restart: the evidence stays until removed.
    let g = start_gateway_at(&configs[0], &format!("127.0.0.1:{}", ports[0]));
    contained(&g, "CoordinationInconsistent", 30);
}

#[test]
fn witnesses_cosign_nodes_sync_with_a_quorum_and_a_cut_node_contains_alone() {
    let mut w = world();
    let data = w.data.clone();
    let log = log_key(&w.server.url);
    let mut witnesses: Vec<Witness> = (1..=3).map(|n| witness(w.dir.path(), n, &log)).collect();
    let wurls: Vec<String> = witnesses.iter().map(|x| x.url.clone()).collect();
    let wflag = format!("--witness-url={}", wurls.join(","));
    restart_authority(&mut w, &data, &[&wflag]);
    let a = w.server.url.clone();
    // Trust root v3: the three witnesses, two of them on every checkpoint.
    let d = w.dir.path().to_path_buf();
    let d = d.as_path();
    let root_token = common::world::token(&data, "root");
    let adds: String = witnesses.iter().map(|x| format!(" --add-witness {}", x.vkey)).collect();
    ok(&mg_line(&format!(
        "trust edit --authority {a} --out {}{adds} --witness-quorum 2",
        s(&d.join("v3.json"))
    )));
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        s(&d.join("v3.json")),
        s(&data.join("offline-root-keys/root-1.key")),
        s(&d.join("v3.dsse.json"))
    )));
    ok(&mg_line(&format!(
        "submit {} --authority {a} --token {root_token}",
        s(&d.join("v3.dsse.json"))
    )));
    approve_and_permit(&w);
    // The checkpoint served carries two witnesses' cosignatures.
    let wargs: Vec<String> = witnesses
        .iter()
        .flat_map(|x| ["--witness".to_owned(), x.vkey.clone()])
        .collect();
    let verify_served = |url: &str| -> bool {
        let cp = d.join("served.cp");
        std::fs::write(&cp, common::world::get_text(&format!("{url}/log/checkpoint"))).unwrap();
        let mut args = vec!["log", "verify-checkpoint", s(&cp), "--vkey", &log, "--quorum", "2"];
        args.extend(wargs.iter().map(String::as_str));
        mg(&args).status.success()
    };
    common::world::eventually(20, "a checkpoint with two cosignatures", || {
        verify_served(&a).then_some(())
    });

    // Three nodes; node 2 through a proxy (to cut it), node 3 through another (to fork it).
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let to_two = Proxy::start(addr(&a));
    let to_three = Proxy::start(addr(&a));
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let peers: Vec<String> = (0..3).filter(|j| *j != i).map(|j| urls[j].clone()).collect();
            let via = [a.as_str(), to_two.url.as_str(), to_three.url.as_str()][i];
            node(&w, i + 1, via, &peers, if i == 1 { 4 } else { 30 })
        })
        .collect();
    let nodes: Vec<Gateway> = (0..3)
        .map(|i| start_gateway_at(&configs[i], &format!("127.0.0.1:{}", ports[i])))
        .collect();
    for g in &nodes {
        wait_for(&g.events, 30, "Serving with a quorum of 2", |v| v["state"] == "Serving");
        assert_eq!(call(&g.url, Some(TOKEN), None, &chat(false)).0, 200);
    }

    // A checkpoint witness 1 cosigned, and a later one it recorded.
    let before = common::world::get_text(&format!("{a}/log/checkpoint"));
    let before_size = checkpoint_size(&a);
    let url = witnesses[0].url.clone();
    let stale = format!("old 0\n\n{before}");
    approve_again(&w, &a, "CHG-1");
    let recorded_by_one = || -> u64 {
        let (st, body) = post_witness(&url, stale.as_bytes());
        assert_eq!(st, 409, "{body}");
        body.trim().parse().unwrap()
    };
    common::world::eventually(20, "witness 1 records the next checkpoint", || {
        (recorded_by_one() > before_size).then_some(())
    });
    // Witness 1 killed with SIGKILL: the other two keep the quorum.
    let port = url.rsplit(':').next().unwrap().to_owned();
    witnesses[0].server.child.kill().unwrap();
    witnesses[0].server.child.wait().unwrap();
    approve_again(&w, &a, "CHG-2");
    let grown = before_size + 2;
    common::world::eventually(20, "a checkpoint witnessed by the two left", || {
        (checkpoint_size(&a) >= grown && verify_served(&a)).then_some(())
    });
    common::world::eventually(20, "node 1 follows", || {
        (peer_checkpoint(&nodes[0]).0 >= grown).then_some(())
    });
    // Back on its port with its state: it refuses to go back.
    let again = serve_witness(&witnesses[0].data, &format!("127.0.0.1:{port}"), &log);
    assert_eq!(again.url, url);
    witnesses[0].server = again;
    let recorded = recorded_by_one();
    assert!(recorded > before_size, "the witness forgot: {recorded} ≤ {before_size}");
    let rollback = format!("old {recorded}\n\n{before}");
    let (st, body) = post_witness(&url, rollback.as_bytes());
    assert_eq!(st, 400, "a rollback to {before_size} after {recorded}: {body}");
    // The authority brings it up to date (409, then from the size it names).
    common::world::eventually(20, "witness 1 catches up", || {
        let (st, body) = post_witness(&url, stale.as_bytes());
        (st == 409 && body.trim().parse::<u64>().ok() == Some(checkpoint_size(&a))).then_some(())
    });

    // Node 2 cut from the authority: contained alone, after its staleness bound.
    let cut = Instant::now();
    to_two.set(None);
    let e = contained(&nodes[1], "SyncInterrupted", 30);
    let took = cut.elapsed();
    println!("node 2 cut: contained after {took:?}: {}", e["detail"]);
    assert!(took >= Duration::from_secs(3), "contained before its bound: {took:?}");
    for g in [&nodes[0], &nodes[2]] {
        assert_eq!(
            call(&g.url, Some(TOKEN), None, &chat(false)).0,
            200,
            "a node the cut did not touch"
        );
    }
    to_two.set(Some(addr(&a)));
    wait_for(&nodes[1].events, 30, "node 2 back", |v| v["state"] == "Serving");

    // A fork of the authority (same key) for node 3: the witnesses saw the
    // authority's history first and refuse the other, so it never meets the
    // quorum and node 3 never trusts it.
    let b = fork_authority(&mut w, &[&wflag]);
    let common_size = checkpoint_size(&a);
    to_three.set(Some(addr(&b.url)));
    approve_again(&w, &a, "CHG-A");
    common::world::eventually(20, "the authority's next checkpoint witnessed", || {
        (checkpoint_size(&a) > common_size && verify_served(&a)).then_some(())
    });
    approve_again(&w, &b.url, "CHG-B");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(checkpoint_size(&b.url), common_size, "the fork's checkpoint was served");
    let (size, _) = peer_checkpoint(&nodes[2]);
    assert!(size <= common_size, "node 3 trusted the fork at {size}");
    // Nor did the fork's history contain anyone: it was never trusted.
    assert_eq!(call(&nodes[2].url, Some(TOKEN), None, &chat(false)).0, 200);
    assert_eq!(call(&nodes[0].url, Some(TOKEN), None, &chat(false)).0, 200);

    // Below the quorum for good (two witnesses gone) with an entry waiting:
    // that entry is never trusted, and node 2 contains at its bound once the
    // authority stops vouching for the old checkpoint's freshness.
    let witnessed = checkpoint_size(&a);
    for x in &mut witnesses[1..] {
        x.server.child.kill().unwrap();
        x.server.child.wait().unwrap();
    }
    let waiting = Instant::now();
    approve_again(&w, &a, "CHG-UNWITNESSED");
    let e = contained(&nodes[1], "SyncInterrupted", 40);
    println!(
        "quorum lost with an entry waiting: node 2 contained after {:?}: {}",
        waiting.elapsed(),
        e["detail"]
    );
    assert_eq!(
        checkpoint_size(&a),
        witnessed,
        "a checkpoint short of the quorum was served"
    );
    assert!(peer_checkpoint(&nodes[0]).0 <= witnessed);
}
