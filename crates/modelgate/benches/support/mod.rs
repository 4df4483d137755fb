//! What the process benches share: an authority governed as a real one is
//! (an approver and a model signer in trust root v2, a signed model
//! registered), and approvals of that model to submit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use modelgate_governance::{to_canonical, Envelope};
use serde_json::json;

use crate::common::{self, s, Server};

/// Run `modelgate ARGS…`, which must succeed; its standard output.
pub fn mg(args: &[&str]) -> String {
    common::ok(&common::mg(args))
}

/// A keep-alive client that reads error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An authority serving `data`, ready to take approvals.
pub struct Governed {
    pub data: PathBuf,
    pub server: Server,
    pub url: String,
    pub admin: String,
    pub digest: String,
    /// The offline root key (`authority init`'s), for further trust roots.
    pub root_key: PathBuf,
    /// Alice, who approves the model.
    pub approver: Approver,
}

/// Alice and the model she approves.
#[derive(Clone)]
pub struct Approver {
    digest: String,
    alice: ed25519_dalek::SigningKey,
}

impl Approver {
    /// An approval of the model with its own ticket: the fold accepts any number.
    pub fn approval(&self, ticket: &str) -> Vec<u8> {
        let v = json!({"type": "approval", "version": 1, "model": self.digest, "scopes": ["prod/*"], "valid_from": 0,
                       "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": ticket});
        Envelope::sign(&to_canonical(&v).unwrap(), &[&self.alice]).unwrap()
    }
}

/// Start an authority in `d/authority` (initialised on first run; the log
/// in MODELGATE_STORE when it is set), add alice (approver) and a model
/// signer to its trust root, and register a signed model.
pub fn governed(d: &Path) -> Governed {
    let data = d.join("authority");
    let server = common::serve(&data);
    let url = server.url.clone();
    let admin = mg(&["authority", "token", "create", "--data", s(&data), "--role", "admin"])
        .trim()
        .to_owned();
    for k in ["alice", "signer"] {
        mg(&["keygen", "--algorithm", "ed25519", "--out", s(&d.join(k))]);
    }
    mg(&["keygen", "--out", s(&d.join("signer-model"))]);
    let p = |n: &str| d.join(n);
    mg(&[
        "trust",
        "edit",
        "--authority",
        &url,
        "--out",
        s(&p("a.json")),
        "--principal",
        "alice",
        "--role",
        "approver",
        "--key",
        s(&p("alice.pub")),
    ]);
    mg(&[
        "trust",
        "edit",
        "--current",
        s(&p("a.json")),
        "--amend",
        "--out",
        s(&p("b.json")),
        "--principal",
        "signer",
        "--role",
        "model-signer",
        "--key",
        s(&p("signer.pub")),
        "--model-key",
        s(&p("signer-model.pub")),
    ]);
    let root_key = data.join("offline-root-keys/root-1.key");
    mg(&[
        "trust",
        "sign",
        s(&p("b.json")),
        "--key",
        s(&root_key),
        "--out",
        s(&p("b.dsse")),
    ]);
    mg(&["submit", s(&p("b.dsse")), "--authority", &url, "--token", &admin]);
    std::fs::create_dir_all(p("model")).unwrap();
    std::fs::write(p("model/w.bin"), "w").unwrap();
    mg(&["sign", s(&p("model")), "--key", s(&p("signer-model.key"))]);
    let digest = mg(&["digest", s(&p("model"))]).trim().to_owned();
    mg(&[
        "model",
        "register",
        s(&p("model")),
        "--name",
        "m",
        "--model-version",
        "1",
        "--key",
        s(&p("signer.key")),
        "--authority",
        &url,
        "--token",
        &admin,
    ]);
    let alice = ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(p("alice.key")).unwrap()).unwrap();
    Governed {
        data,
        server,
        url,
        admin,
        root_key,
        approver: Approver {
            digest: digest.clone(),
            alice,
        },
        digest,
    }
}

/// Concurrent clients of the HTTP benches.
pub const CLIENTS: usize = 64;

/// Percentile `p` of latencies in µs, in ms.
pub fn pct(mut v: Vec<u64>, p: f64) -> f64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// Operations per second and their latencies.
pub struct Run {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub count: u64,
}

/// `op(client, n)` in CLIENTS threads for `secs`; latencies in µs.
pub fn drive(secs: f64, op: Arc<dyn Fn(usize, u64) -> bool + Send + Sync>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, op) = (Arc::clone(&stop), Arc::clone(&op));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if op(c, n) {
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    n += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let lat: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    Run {
        per_sec: lat.len() as f64 / elapsed,
        p50_ms: pct(lat.clone(), 0.5),
        p99_ms: pct(lat.clone(), 0.99),
        count: lat.len() as u64,
    }
}

/// CPU seconds (user + system) used so far by `pids`, from /proc (USER_HZ = 100).
pub fn cpu_secs(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the parenthesised name: utime and stime are fields 14 and 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum();
    ticks as f64 / 100.0
}

/// wrk at saturation with keep-alive (2 threads, `connections`), POSTing
/// `body` to `url`/v1/chat/completions with bearer `token`; requests/s.
/// Non-2xx answers are printed (a benchmark of refusals is not one of calls).
pub fn wrk(url: &str, body: &str, token: &str, connections: u32, secs: u64) -> f64 {
    let script = std::env::temp_dir().join(format!("modelgate-wrk-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ),
    )
    .unwrap();
    let o = std::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
            s(&script),
        ])
        .arg(format!("{url}/v1/chat/completions"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk against {url} saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// An nginx of this bench's own (its prefix a directory of the bench's),
/// stopped when dropped.
pub struct Nginx(pub std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

/// nginx with 2 workers, keep-alive, no logs, no buffering: `http` inside
/// its `http {}` block and `location` as its one server's `location / {}`.
/// Returns it and its base URL, or why it could not start.
fn start_nginx(dir: &Path, http: &str, location: &str) -> Result<(Nginx, String), String> {
    use std::process::{Command, Stdio};
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Command::new(b).arg("-v").output().is_ok())
        .ok_or("nginx is not installed (apt-get install nginx-light)")?;
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = format!(
        "worker_processes 2;\nerror_log {p}/logs/error.log;\npid {p}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  {http}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ {location} }}\n  }}\n}}\n",
        p = s(dir)
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .args(["-p", s(dir), "-c", s(&dir.join("nginx.conf")), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Nginx(child), url))
}

/// nginx as a plain reverse proxy of `upstream` (HTTP/1.1 keep-alive to it).
pub fn nginx_proxy(dir: &Path, upstream: &str) -> Result<(Nginx, String), String> {
    let up = upstream.trim_start_matches("http://");
    start_nginx(
        dir,
        &format!("upstream up {{ server {up}; keepalive 128; }}"),
        "proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off;",
    )
}

/// nginx answering every request with `body` as JSON: an upstream that costs
/// as little as a server can.
pub fn nginx_answering(dir: &Path, body: &str) -> Result<(Nginx, String), String> {
    start_nginx(dir, "", &format!("default_type application/json; return 200 '{body}';"))
}

/// `pid` and its children (nginx's master and its workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
