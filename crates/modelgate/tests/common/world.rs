//! A running authority with a rotated trust root (approvers alice and bob,
//! a model signer, a policy admin, a node admin) and a registered model.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{mg, mg_line, ok, s, serve, stderr, stdout, Server};

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// GET `url`, which must answer 200: its body as text.
pub fn get_text(url: &str) -> String {
    let mut r = agent().get(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.body_mut().read_to_string().unwrap()
}

/// GET `url`, which must answer 200: its body as JSON.
pub fn get_json(url: &str) -> Value {
    serde_json::from_str(&get_text(url)).unwrap()
}

pub fn post(url: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut req = agent()
        .post(&format!("{url}/api/v1/entries"))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send(body).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn token(data: &Path, role: &str) -> String {
    let o = mg(&["authority", "token", "create", "--data", s(data), "--role", role]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_owned()
}

pub fn keygen(dir: &Path, name: &str, alg: &str) -> PathBuf {
    let prefix = dir.join(name);
    let o = mg(&["keygen", "--algorithm", alg, "--out", s(&prefix)]);
    assert!(o.status.success(), "{}", stderr(&o));
    prefix
}

/// An authority with alice and bob (approvers), a model signer and a policy
/// admin in trust root v2, and a registered signed model.
pub struct World {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub server: Server,
    pub admin: String,
    pub digest: String,
}

pub fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("authority");
    let server = serve(&data); // initialises the empty dir
    let url = server.url.clone();
    let root_token = token(&data, "root");
    let admin = token(&data, "admin");
    let d = dir.path();
    for k in ["alice", "bob", "signer", "padmin", "nadmin"] {
        keygen(d, k, "ed25519");
    }
    keygen(d, "signer-model", "ecdsa-p256");
    let p = |n: &str| d.join(n);
    ok(&mg_line(&format!(
        "trust edit --authority {} --out {} --principal alice --role approver --key {}",
        &url,
        s(&p("v2a.json")),
        s(&p("alice.pub"))
    )));
    ok(&mg_line(&format!(
        "trust edit --current {} --amend --out {} --principal bob --role approver --key {}",
        s(&p("v2a.json")),
        s(&p("v2b.json")),
        s(&p("bob.pub"))
    )));
    ok(&mg_line(&format!(
        "trust edit --current {} --amend --out {} --principal signer --role model-signer --key {} --model-key {}",
        s(&p("v2b.json")),
        s(&p("v2c.json")),
        s(&p("signer.pub")),
        s(&p("signer-model.pub"))
    )));
    ok(&mg_line(&format!(
        "trust edit --current {} --amend --out {} --principal padmin --role policy-admin --key {}",
        s(&p("v2c.json")),
        s(&p("v2d.json")),
        s(&p("padmin.pub"))
    )));
    ok(&mg_line(&format!(
        "trust edit --current {} --amend --out {} --principal nadmin --role node-admin --key {}",
        s(&p("v2d.json")),
        s(&p("v2.json")),
        s(&p("nadmin.pub"))
    )));
    // Signed by a key that is not a root key: refused, and the reason says why.
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        s(&p("v2.json")),
        s(&p("alice.key")),
        s(&p("v2-bad.dsse.json"))
    )));
    let o = mg_line(&format!(
        "submit {} --authority {} --token {}",
        s(&p("v2-bad.dsse.json")),
        &url,
        &root_token
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("trust-root-threshold"), "{}", stderr(&o));
    // Signed by the offline root key: accepted.
    let root_key = data.join("offline-root-keys/root-1.key");
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        s(&p("v2.json")),
        s(&root_key),
        s(&p("v2.dsse.json"))
    )));
    assert!(ok(&mg_line(&format!(
        "submit {} --authority {} --token {}",
        s(&p("v2.dsse.json")),
        &url,
        &root_token
    )))
    .contains("accepted at index 1"));

    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), "weights").unwrap();
    ok(&mg(&["sign", s(&model), "--key", s(&p("signer-model.key"))]));
    let digest = ok(&mg(&["digest", s(&model)])).trim().to_owned();
    let o = mg_line(&format!(
        "model register {} --name credit --model-version 1.0 --key {} --authority {} --token {}",
        s(&model),
        s(&p("signer.key")),
        &url,
        &admin
    ));
    assert!(ok(&o).contains("accepted at index 2"));
    World {
        dir,
        data,
        server,
        admin,
        digest,
    }
}

/// A node for the world's model: configured (`extra` is added to the TOML
/// before the model table), its key made, enrolled by the node admin; the
/// model approved for `prod/credit/*` and a permit-all policy published.
/// Returns the configuration file.
pub fn approved_node(w: &World, extra: &str) -> PathBuf {
    let d = w.dir.path();
    let url = &w.server.url;
    let config = d.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"node-1\"\nauthority = \"{url}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"node-data\"\n{extra}\n[models.credit]\ndir = \"model\"\nbundle = \"model/model.sig\"\n",
            s(&w.data.join("trust-root.dsse.json"))
        ),
    )
    .unwrap();
    let vkey = ok(&mg_line(&format!("node init --config {}", s(&config))))
        .trim()
        .to_owned();
    ok(&mg_line(&format!(
        "node enroll node-1 --node-key {vkey} --scope prod/* --key {} --authority {url} --token {}",
        s(&d.join("nadmin.key")),
        w.admin
    )));
    approve_and_permit(w);
    config
}

/// Alice revokes the world's model through the CLI; returns what it printed.
pub fn revoke(w: &World, reason: &str, ticket: &str) -> String {
    ok(&mg_line(&format!(
        "revoke {} --reason {reason} --ticket {ticket} --key {} --authority {} --token {}",
        w.digest,
        s(&w.dir.path().join("alice.key")),
        w.server.url,
        w.admin
    )))
}

/// Alice approves the world's model for `prod/credit/*` (low tier, one day)
/// and the policy admin publishes a permit-all Cedar policy.
pub fn approve_and_permit(w: &World) {
    let d = w.dir.path();
    let url = &w.server.url;
    ok(&mg_line(&format!(
        "approve {} --scope prod/credit/* --until +1d --tier low --ticket CHG-9 --key {} --authority {url} --token {}",
        w.digest,
        s(&d.join("alice.key")),
        w.admin
    )));
    std::fs::write(d.join("all.cedar"), "permit(principal, action, resource);").unwrap();
    ok(&mg_line(&format!(
        "policy publish {} --key {} --authority {url} --token {}",
        s(&d.join("all.cedar")),
        s(&d.join("padmin.key")),
        w.admin
    )));
}

/// JSON lines from a child's stdout, on a channel.
pub fn json_lines(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    rx
}

/// Wait (at most `secs`) for a line matching `f`.
pub fn wait_for(rx: &std::sync::mpsc::Receiver<Value>, secs: u64, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if f(&v) => return v,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {secs} s"),
        }
    }
}

/// `modelgate node CMD --config CONFIG ARGS…` (`serve` or `run`) with
/// `env` added: the process (killed when dropped) and its events, one JSON
/// value per line.
pub fn spawn_node(
    cmd: &str,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Killed, std::sync::mpsc::Receiver<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["node", cmd, "--config", s(config)])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = json_lines(child.stdout.take().unwrap());
    (Killed(child), events)
}

/// `node serve` ([`spawn_node`]) with its events drained: the process and its pid.
pub fn node_serve(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (Killed, u32) {
    let (child, events) = spawn_node("serve", config, args, env);
    std::thread::spawn(move || for _ in events {});
    let pid = child.0.id();
    (child, pid)
}

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test-support mock upstream on a free port, streaming `chunks`
/// events `delay_ms` apart: the server (stopped when dropped) and its URL.
pub fn start_mock(chunks: u32, delay_ms: u64) -> (modelgate_testkit::MockServer, String) {
    let m = modelgate_testkit::MockServer::start(modelgate_testkit::Mock {
        chunks,
        delay: std::time::Duration::from_millis(delay_ms),
    })
    .unwrap();
    let url = m.url().to_owned();
    (m, url)
}

/// A node configuration's `[callers.NAME]` table for bearer `token` (only
/// its SHA-256 is configured), with Cedar `groups` and allowed `scopes`.
pub fn caller_table(name: &str, token: &str, groups: &[&str], scopes: &[&str]) -> String {
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    format!(
        "\n[callers.{name}]\ntoken_sha256 = \"{sha}\"\ngroups = {}\nscopes = {}\n",
        serde_json::json!(groups),
        serde_json::json!(scopes)
    )
}

/// A gateway (`node serve`) in front of a mock upstream, and its events.
pub struct Gateway {
    pub url: String,
    pub events: std::sync::mpsc::Receiver<Value>,
    pub node: Killed,
    pub mock: modelgate_testkit::MockServer,
}

pub fn start_gateway(config: &std::path::Path) -> Gateway {
    start_gateway_at(config, "127.0.0.1:0")
}

/// [`start_gateway`] listening on `listen` (peers must know it in advance).
pub fn start_gateway_at(config: &std::path::Path, listen: &str) -> Gateway {
    let (mock, upstream) = start_mock(8, 60);
    let mut node = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["node", "serve", "--config", s(config), "--interval-ms", "100"])
        .env("MODELGATE_NODE_UPSTREAM", &upstream)
        .env("MODELGATE_NODE_LISTEN", listen)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = json_lines(node.stdout.take().unwrap());
    let listening = wait_for(&events, 20, "listening", |v| v.get("listening").is_some());
    Gateway {
        url: listening["listening"].as_str().unwrap().to_owned(),
        events,
        node: Killed(node),
        mock,
    }
}

/// A chat call by `token` (and scope): status, headers, body.
pub fn call(url: &str, token: Option<&str>, scope: Option<&str>, body: &Value) -> (u16, ureq::http::HeaderMap, Value) {
    let mut req = agent()
        .post(&format!("{url}/v1/chat/completions"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(sc) = scope {
        req = req.header("x-modelgate-scope", sc);
    }
    let mut r = req
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn chat(stream: bool) -> Value {
    json!({"model": "credit", "stream": stream, "messages": [{"role": "user", "content": "score applicant 42"}]})
}

/// Poll `f` every 50 ms for up to `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(x) = f() {
            return (x, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bearer token of the caller [`node`] configures.
pub const NODE_CALLER_TOKEN: &str = "distributed-caller-secret";

/// A port free now for a gateway the peers must know in advance, chosen
/// below Linux's ephemeral range (32768–60999): a port the kernel hands to
/// some other socket meanwhile can never be one of these.
/// POST `body` to `url`/v1/chat/completions as `token` every `every` until
/// it answers 200 (nothing listening yet counts as not yet); panics after `limit`.
pub fn until_served(url: &str, token: &str, body: &str, every: Duration, limit: Duration) {
    let agent = agent();
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < limit, "no 200 from {url} in {limit:?}");
        let r = agent
            .post(&format!("{url}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body);
        if matches!(&r, Ok(r) if r.status().as_u16() == 200) {
            return;
        }
        std::thread::sleep(every);
    }
}

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + ((seed + n * 104_729) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Node `n`'s configuration, its key made and enrolled by the node admin.
pub fn node(w: &World, n: usize, authority: &str, peers: &[String], staleness: u64) -> PathBuf {
    let d = w.dir.path();
    let config = d.join(format!("node-{n}.toml"));
    let peers = peers.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        &config,
        format!(
            "node = \"node-{n}\"\nauthority = \"{authority}\"\ntrust_root = \"{}\"\nkey = \"node-{n}.skey\"\n\
             scopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = {staleness}\ndata_dir = \"node-{n}-data\"\n\
             anchor_interval_seconds = 30\npeer_interval_seconds = 1\npeers = [{peers}]\n{}\n\
             [models.credit]\ndir = \"model\"\nbundle = \"model/model.sig\"\n",
            s(&w.data.join("trust-root.dsse.json")),
            caller_table("scoring-service", NODE_CALLER_TOKEN, &[], &["prod/credit/scoring"])
        ),
    )
    .unwrap();
    let vkey = ok(&mg_line(&format!("node init --config {}", s(&config))))
        .trim()
        .to_owned();
    ok(&mg_line(&format!(
        "node enroll node-{n} --node-key {vkey} --scope prod/* --key {} --authority {} --token {}",
        s(&d.join("nadmin.key")),
        w.server.url,
        w.admin
    )));
    config
}

/// The log's verifier key, from the authority's trust root.
pub fn log_key(url: &str) -> String {
    let v = get_json(&format!("{url}/api/v1/trust-root"));
    v["authority"]["log"]
        .as_str()
        .or_else(|| v["doc"]["authority"]["log"].as_str())
        .unwrap_or_else(|| panic!("no log key in {v}"))
        .to_owned()
}

/// The size of the checkpoint the authority at `url` serves.
pub fn checkpoint_size(url: &str) -> u64 {
    get_text(&format!("{url}/log/checkpoint"))
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// The checkpoint a node serves its peers: size and root (base64).
pub fn peer_checkpoint(g: &Gateway) -> (u64, String) {
    let t = get_text(&format!("{}/peer/checkpoint", g.url));
    let mut l = t.lines().skip(1);
    (l.next().unwrap().parse().unwrap(), l.next().unwrap().to_owned())
}

/// A TCP proxy the test can point elsewhere or cut: a process's only way
/// to a server, so the test can partition it or show it another one.
pub struct Proxy {
    pub url: String,
    target: Arc<Mutex<Option<SocketAddr>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let target = Arc::new(Mutex::new(Some(target)));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (t, o) = (Arc::clone(&target), Arc::clone(&open));
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let Some(to) = *t.lock().unwrap() else { continue };
                let Ok(up) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([conn.try_clone().unwrap(), up.try_clone().unwrap()]);
                for (mut from, mut to) in [(conn.try_clone().unwrap(), up.try_clone().unwrap()), (up, conn)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { url, target, open }
    }

    /// Forward new connections to `to` (none: refuse them); cut the open ones.
    pub fn set(&self, to: Option<SocketAddr>) {
        *self.target.lock().unwrap() = to;
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// POST a signed entry to the authority at `url` with a write token:
/// status, headers, JSON body.
pub fn submit_entry(url: &str, token: &str, entry: &[u8]) -> (u16, ureq::http::HeaderMap, Value) {
    let mut r = agent()
        .post(&format!("{url}/api/v1/entries"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(entry)
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        r.headers().clone(),
        serde_json::from_str(&body).unwrap_or_default(),
    )
}
