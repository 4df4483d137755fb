//! The authority on PostgreSQL, with real processes and a real server
//! (MODELGATE_POSTGRES_URL, set by scripts/test.sh; missing, this fails):
//! `authority serve --store postgres://…` initialises the log in the
//! database and governs as on SQLite (trust-root rotation, a signed model
//! registered, an approval); `log audit` of the database passes. A second
//! authority on the same database serves as a replica: it serves the same
//! log and passes writes to the sequencer, which it names (only to the
//! authorities `--peer-url` lists, when given); cut off from the database,
//! a replica stops renewing its checkpoint's timestamp after 5 s and is
//! fresh again once reconnected; killed with
//! SIGKILL, the sequencer is replaced by the replica within 5 s, and back,
//! it is a replica in turn; paused past its lease (SIGSTOP) and woken, a
//! sequencer finds itself deposed and serves as a replica. A database that holds a log is never
//! initialised again; a `pg_dump` of it restored into another database
//! audits clean. Debian's nginx caches the two replicas' tiles (a second
//! read is a cache hit) and a node syncs and serves through it. Then the
//! sequencer is killed with SIGKILL thirty times at random moments under
//! concurrent submissions to both authorities, while two nodes follow one
//! each and exchange checkpoints: every acknowledged entry is at its
//! acknowledged index, no index is acknowledged twice, the audit passes,
//! and neither node ever sees a fork or contains.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::world::{checkpoint_size as size, free_port, log_key, start_gateway_at, submit_entry as submit, World};
use common::{mg, s};

#[test]
fn an_authority_on_postgresql_governs_audits_and_hands_over() {
    let server = modelgate_testkit::postgres::Server::required();
    let db = server.database("mg_authority_test");
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

    // A second authority on the same database: a replica of the first.
    let other = w.dir.path().join("other");
    common::copy_dir(&w.data, &other);
    let replica = common::spawn_server(&["authority", "serve", "--data", s(&other), "--listen", "127.0.0.1:0"]);
    assert_eq!(sequencing(&url), Some(true));
    assert_eq!(sequencing(&replica.url), Some(false));
    assert_eq!(size(&replica.url), n, "the replica serves the log");
    assert_eq!(
        common::world::get_text(&format!("{}/api/v1/entries/2", replica.url)),
        common::world::get_text(&format!("{url}/api/v1/entries/2"))
    );
    // A write to the replica goes to the sequencer, which it names.
    let (status, headers, body) = submit(&replica.url, &w.admin, &approval(&w, "REPLICA-1"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers.get("modelgate-sequencer").unwrap(), url.as_str());
    assert_eq!(body["index"], n);
    common::world::eventually(5, "the replica serves the new entry", || {
        (size(&replica.url) > n).then_some(())
    });
    // Written by the sequencer, a write passed on once is never passed on again.
    let mut r = common::world::agent()
        .post(&format!("{}/api/v1/entries", replica.url))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {}", w.admin))
        .header("Modelgate-Forwarded", "1")
        .send(&approval(&w, "LOOP")[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "not-sequencer");
    assert_eq!(v["error"]["sequencer"], url.as_str(), "{v}");

    // A replica told which authorities it may pass writes to (with their
    // tokens) passes nothing to a URL the database names otherwise.
    let third = w.dir.path().join("third");
    common::copy_dir(&w.data, &third);
    let strict = common::spawn_server(&[
        "authority",
        "serve",
        "--data",
        s(&third),
        "--listen",
        "127.0.0.1:0",
        "--peer-url",
        "http://authority.elsewhere.example:7370",
    ]);
    let before = size(&url);
    let (status, _, body) = submit(&strict.url, &w.admin, &approval(&w, "NOT-PASSED"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not-sequencer");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("--peer-url"),
        "{body}"
    );
    assert_eq!(size(&url), before, "nothing was appended");
    drop(strict);

    // A replica cut off from the database stops vouching for its view
    // within REPLICA_GRACE (5 s): its checkpoint's cosignature ages, so the
    // nodes that follow it contain at their bound; reconnected, it is fresh.
    let pg_at = db.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    let link = common::world::Proxy::start(pg_at.parse().unwrap());
    let via = db.replace(&pg_at, link.url.trim_start_matches("http://"));
    let fourth = w.dir.path().join("fourth");
    common::copy_dir(&w.data, &fourth);
    let cut = common::spawn_server(&[
        "authority",
        "serve",
        "--data",
        s(&fourth),
        "--listen",
        "127.0.0.1:0",
        "--store",
        &via,
    ]);
    assert_eq!(sequencing(&cut.url), Some(false));
    let age = |u: &str| metric(u, "modelgate_checkpoint_cosignature_age_seconds");
    common::world::eventually(5, "the replica's checkpoint is fresh", || {
        (age(&cut.url) <= 1).then_some(())
    });
    link.set(None);
    let (_, stale) = common::world::eventually(20, "the cut-off replica stops renewing its checkpoint", || {
        (age(&cut.url) >= 2).then_some(())
    });
    println!("a replica cut off from the database stops renewing its checkpoint; its age reaches 2 s {stale:?} after the cut");
    // Ages are whole seconds: 2 s of age can show a little over 1 s after
    // the last renewal, which comes at most 0.5 s before the grace ends.
    assert!(
        stale >= Duration::from_secs(4),
        "it vouched for less than its grace: {stale:?}"
    );
    link.set(Some(pg_at.parse().unwrap()));
    common::world::eventually(20, "the reconnected replica is fresh again", || {
        (age(&cut.url) <= 1 && size(&cut.url) == size(&url)).then_some(())
    });
    drop(cut);

    // The sequencer killed with SIGKILL: its lease runs out, the replica takes over.
    let n = size(&url);
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    let killed = Instant::now();
    let (_, took) = common::world::eventually(20, "the replica takes over", || {
        (sequencing(&replica.url) == Some(true)).then_some(())
    });
    println!("the replica sequences {took:?} after the sequencer was killed with SIGKILL");
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    let (status, headers, body) = submit(&replica.url, &w.admin, &approval(&w, "AFTER-KILL"));
    assert_eq!(status, 201, "{body}");
    assert!(headers.get("modelgate-sequencer").is_none(), "written by itself");
    assert_eq!(body["index"], n, "every entry is there, and the next one follows");
    let _ = killed;
    // Back, the first authority is a replica in turn; writes through it reach the new sequencer.
    let first = common::spawn_server(&["authority", "serve", "--data", s(&w.data), "--listen", "127.0.0.1:0"]);
    assert_eq!(sequencing(&first.url), Some(false));
    drop(std::mem::replace(&mut w.server, first));
    common::world::approve_and_permit(&w);
    assert!(size(&replica.url) > n + 1);

    // A sequencer paused past its lease (SIGSTOP) is replaced; woken, it
    // finds itself deposed and serves as a replica, never appending.
    let signal = |sig: &str, pid: u32| {
        assert!(Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP", replica.child.id());
    let (_, took) = common::world::eventually(20, "the first takes over from the paused one", || {
        (sequencing(&w.server.url) == Some(true)).then_some(())
    });
    println!("the first authority sequences {took:?} after the sequencer was paused");
    signal("-CONT", replica.child.id());
    common::world::eventually(10, "the woken one steps down", || {
        (sequencing(&replica.url) == Some(false)).then_some(())
    });
    let at = size(&w.server.url);
    let (status, headers, body) = submit(&replica.url, &w.admin, &approval(&w, "AFTER-PAUSE"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers.get("modelgate-sequencer").unwrap(), w.server.url.as_str());
    assert_eq!(body["index"], at);

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
    let restored = server.database("mg_authority_restored");
    let st = Command::new(pg_bin.join("psql"))
        .args(["--quiet", "--dbname", &restored, "--file", s(&dump)])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = common::ok(&mg(&["log", "audit", &restored, "--vkey", &log]));
    assert!(out.contains("store: intact"), "{out}");

    behind_nginx(&w, &[&w.server.url, &replica.url]);

    // The kill test runs both on ports fixed in advance, so that a node follows each across restarts.
    let dead = std::mem::replace(&mut w.server, replica);
    drop(dead);
    kill_thirty_times(&mut w, &other, &db, &log);
    std::env::remove_var("MODELGATE_STORE");
}

/// A gauge of the authority at `url`'s `/metrics`.
fn metric(url: &str, name: &str) -> u64 {
    let text = common::world::get_text(&format!("{url}/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Whether the authority at `url` sequences (its `modelgate_sequencer`
/// gauge); `None` when it does not answer.
fn sequencing(url: &str) -> Option<bool> {
    let mut r = common::world::agent().get(&format!("{url}/metrics")).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("modelgate_sequencer "))
        .map(|v| v.trim() == "1")
}

/// An approval of the world's model by alice, with its own ticket: an entry
/// the fold accepts any number of times.
fn approval(w: &World, ticket: &str) -> Vec<u8> {
    let alice = std::fs::read_to_string(w.dir.path().join("alice.key")).unwrap();
    approval_by(&alice, &w.digest, ticket)
}

/// [`approval`] from alice's key (PEM) and the model's digest.
fn approval_by(alice_pem: &str, digest: &str, ticket: &str) -> Vec<u8> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let alice = ed25519_dalek::SigningKey::from_pkcs8_pem(alice_pem).unwrap();
    let v = serde_json::json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/*"],
        "valid_from": 0, "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": ticket});
    modelgate_governance::Envelope::sign(&modelgate_governance::to_canonical(&v).unwrap(), &[&alice]).unwrap()
}

/// Debian's nginx as a caching proxy in front of `authorities`: its URL.
/// Killed on drop.
struct Nginx {
    url: String,
    master: std::process::Child,
}

impl Drop for Nginx {
    /// SIGTERM, then wait: the master stops its workers (a SIGKILLed
    /// master would leave them running, holding the port).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status();
        let _ = self.master.wait();
    }
}

fn nginx(dir: &std::path::Path, authorities: &[&str]) -> Nginx {
    use std::os::unix::fs::MetadataExt as _;
    let bin = "/usr/sbin/nginx";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing (Debian package nginx; .ci/run installs it)"
    );
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let upstreams: String = authorities
        .iter()
        .map(|u| {
            format!(
                "    server {} max_fails=1 fail_timeout=2s;\n",
                u.trim_start_matches("http://")
            )
        })
        .collect();
    // Run by root, its workers would be nobody, who cannot enter the test's private directory.
    let user = if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        "user root;"
    } else {
        ""
    };
    let d = s(dir);
    let conf = format!(
        "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         proxy_cache_path {d}/cache levels=1:2 keys_zone=modelgate:10m max_size=1g inactive=7d use_temp_path=off;\n\
         upstream authorities {{\n{upstreams}    keepalive 16;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
         location / {{\n      proxy_pass http://authorities;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n      proxy_next_upstream error timeout http_502 http_503;\n\
         proxy_cache modelgate;\n      proxy_cache_lock on;\n\
         add_header X-Cache-Status $upstream_cache_status always;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(bin)
        .args(["-e", &format!("{d}/error.log"), "-p", d, "-c", s(&path)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = Nginx {
        url: format!("http://127.0.0.1:{port}"),
        master: child,
    };
    common::world::eventually(10, "nginx listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(proxy.master.try_wait().unwrap().is_none(), "nginx exited");
    proxy
}

/// Submit `count` approvals, eight at a time, to `url`.
fn grow(w: &World, url: &str, count: usize, tag: &str) {
    std::thread::scope(|sc| {
        for t in 0..8 {
            sc.spawn(move || {
                for k in (t..count).step_by(8) {
                    let (status, _, body) = submit(url, &w.admin, &approval(w, &format!("{tag}-{k}")));
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
}

/// GET through the cache: status, X-Cache-Status, Cache-Control, body.
fn cached(url: &str) -> (u16, String, String, Vec<u8>) {
    let mut r = common::world::agent().get(url).call().unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cache, control) = (h("x-cache-status"), h("cache-control"));
    let status = r.status().as_u16();
    (status, cache, control, r.body_mut().read_to_vec().unwrap())
}

/// nginx in front of the two authorities: full tiles and entry bundles
/// come from its cache on a second read, the checkpoint lives a second,
/// and a node syncs through it and serves.
fn behind_nginx(w: &World, authorities: &[&str]) {
    let proxy = nginx(&w.dir.path().join("nginx"), authorities);
    // A full tile needs 256 entries.
    let have = size(authorities[0]);
    if have < 300 {
        grow(w, authorities[1], (300 - have) as usize, "TILE");
    }
    // A replica serves what it has read: within its follow interval.
    for a in authorities {
        common::world::eventually(5, "both authorities serve 300 entries", || {
            (size(a) >= 300).then_some(())
        });
    }
    for path in ["/log/tile/0/000", "/log/tile/entries/000", "/log/tile/1/000.p/1"] {
        let direct = common::world::agent()
            .get(&format!("{}{path}", authorities[0]))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        let (st, first, control, body) = cached(&format!("{}{path}", proxy.url));
        assert_eq!(st, 200, "{path}");
        assert_eq!(body, direct, "{path}: the proxy serves the authority's bytes");
        assert_ne!(first, "HIT", "{path}: nothing was cached before");
        let (_, second, _, again) = cached(&format!("{}{path}", proxy.url));
        assert_eq!(again, direct);
        if path.contains(".p/") {
            assert_eq!(control, "public, max-age=60", "{path}: a partial tile lives a minute");
        } else {
            assert_eq!(control, "public, max-age=31536000, immutable", "{path}");
            assert_eq!(second, "HIT", "{path}: the second read comes from the cache");
        }
    }
    let (st, _, control, note) = cached(&format!("{}/log/checkpoint", proxy.url));
    assert_eq!(st, 200);
    assert_eq!(control, "public, max-age=1", "the checkpoint lives a second");
    assert!(
        String::from_utf8_lossy(&note)
            .lines()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 300
    );

    // Reads through the cache against reads from an authority, for BENCHMARKS.md.
    let rate = |base: &str| {
        let start = Instant::now();
        let mut n = 0u32;
        std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    sc.spawn(move || {
                        let agent = common::world::agent();
                        let mut k = 0u32;
                        while start.elapsed() < Duration::from_secs(3) {
                            let mut r = agent.get(&format!("{base}/log/tile/0/000")).call().unwrap();
                            assert_eq!(r.body_mut().read_to_vec().unwrap().len(), 256 * 32);
                            k += 1;
                        }
                        k
                    })
                })
                .collect();
            n = hs.into_iter().map(|h| h.join().unwrap()).sum();
        });
        f64::from(n) / start.elapsed().as_secs_f64()
    };
    let (through, direct) = (rate(&proxy.url), rate(authorities[0]));
    println!(
        "full tile reads, 4 clients for 3 s: {through:.0}/s through the nginx cache, {direct:.0}/s from an authority ({:.2}x)",
        through / direct
    );

    // A node that knows the authorities only through the cache syncs and serves.
    let config = common::world::node(w, 9, &proxy.url, &[], 30);
    let g = start_gateway_at(&config, "127.0.0.1:0");
    serves(&g, "the node behind the cache serves");
}

/// Wait (up to 30 s) until the node answers its caller's call with 200.
fn serves(g: &common::world::Gateway, what: &str) {
    common::world::eventually(30, what, || {
        let (st, _, _) = common::world::call(
            &g.url,
            Some(common::world::NODE_CALLER_TOKEN),
            None,
            &common::world::chat(false),
        );
        (st == 200).then_some(())
    });
}

/// SIGKILL the sequencer at random moments while four clients submit to
/// both authorities and two nodes follow one each; the test is their
/// supervisor and starts a killed one again as a replica.
fn kill_thirty_times(w: &mut World, other: &std::path::Path, db: &str, log: &str) {
    use sha2::Digest as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const KILLS: usize = 30;
    const CLIENTS: usize = 4;
    let dirs = [w.data.clone(), other.to_path_buf()];
    let ports = [free_port(), free_port()];
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let start = |i: usize| {
        common::spawn_server(&[
            "authority",
            "serve",
            "--data",
            s(&dirs[i]),
            "--listen",
            &format!("127.0.0.1:{}", ports[i]),
        ])
    };
    let sequencer = |urls: &[String]| {
        common::world::eventually(30, "an authority sequences", || {
            urls.iter().position(|u| sequencing(u) == Some(true))
        })
    };
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    let mut servers = [Some(start(0)), Some(start(1))];
    sequencer(&urls);
    w.server.url = urls[0].clone();

    // Two nodes, one on each authority, each the other's peer.
    let gports = [free_port(), free_port()];
    let gurls: Vec<String> = gports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let gateways: Vec<_> = (0..2)
        .map(|i| {
            let config = common::world::node(w, i + 1, &urls[i], &[gurls[1 - i].clone()], 30);
            start_gateway_at(&config, &format!("127.0.0.1:{}", gports[i]))
        })
        .collect();
    for g in &gateways {
        serves(g, "the node serves");
        // What a node did before it first served (e.g. waiting to see its
        // own enrollment) is not what this test is about.
        let _ = g.events.try_iter().count();
    }

    // (acknowledged index, SHA-256 of the entry submitted)
    type Acked = Vec<(u64, [u8; 32])>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (acked, stop, urls) = (Arc::clone(&acked), Arc::clone(&stop), urls.clone());
            let entry = {
                let w: &World = w;
                let alice = std::fs::read_to_string(w.dir.path().join("alice.key")).unwrap();
                let digest = w.digest.clone();
                move |k: usize| approval_by(&alice, &digest, &format!("KILL-{c}-{k}"))
            };
            let admin = w.admin.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                // A new entry for every attempt: one that was not acknowledged
                // may be in the log or not, and is never counted. Every
                // other one goes to the replica, which passes it on.
                for k in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let e = entry(k);
                    let r = agent
                        .post(&format!("{}/api/v1/entries", urls[k % 2]))
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
        let (victim, _) = sequencer(&urls);
        drop(servers[victim].take());
        let killed = Instant::now();
        sequencer(&urls);
        takeovers.push(killed.elapsed());
        servers[victim] = Some(start(victim));
        println!(
            "kill {k}: {before} acknowledged before it, authority {victim} killed, takeover {:?}",
            takeovers[k]
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

    // The nodes never saw a fork: each follows the log (its checkpoint is
    // the database's at that size), neither contained, no evidence kept.
    let total = stored.len() as u64;
    for (i, g) in gateways.iter().enumerate() {
        let (n, root) = common::world::eventually(20, "the node follows to the end", || {
            let (n, root) = common::world::peer_checkpoint(g);
            (n + 1000 >= total).then_some((n, root))
        })
        .0;
        let note: Vec<u8> = c
            .query_one("SELECT note FROM checkpoints WHERE size = $1", &[&(n as i64)])
            .unwrap()
            .get(0);
        assert_eq!(
            String::from_utf8_lossy(&note).lines().nth(2).unwrap(),
            root,
            "node {i}: its checkpoint is the log's"
        );
        let events: Vec<serde_json::Value> = g.events.try_iter().collect();
        assert!(
            !events.iter().any(|v| v["state"] == "Contained"),
            "node {i} contained: {:?}",
            events.iter().filter(|v| v["state"] == "Contained").collect::<Vec<_>>()
        );
        let evidence = w.dir.path().join(format!("node-{}-data/split-view", i + 1));
        assert!(
            std::fs::read_dir(&evidence).map_or(true, |mut d| d.next().is_none()),
            "node {i} kept split-view evidence"
        );
    }
    takeovers.sort();
    println!(
        "{KILLS} SIGKILLs under load: {} entries acknowledged, all at their index; {} in the log; takeover p50 {:?}, max {:?}",
        acked.len(),
        stored.len(),
        takeovers[KILLS / 2],
        takeovers[KILLS - 1]
    );
    assert!(
        takeovers[KILLS - 1] < Duration::from_secs(5),
        "a takeover took {:?}",
        takeovers[KILLS - 1]
    );
    assert!(
        acked.len() > 100 * KILLS,
        "too few acknowledged entries to mean anything: {}",
        acked.len()
    );
}
