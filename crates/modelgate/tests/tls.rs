//! TLS from outside, with the real tools: a dev authority, a witness and a
//! node's gateway, each on TLS with mutual TLS, made from `modelgate dev ca`
//! certificates, in front of an https:// inference server. On every port:
//! `openssl s_client -tls1_1` and `-tls1` are refused, plain HTTP gets no
//! HTTP answer, `curl --cacert` without a client certificate is refused and
//! with one is served, a wrong CA and an expired certificate are refused.
//! Calls are governed by token and by certificate alone; the official
//! `openai` Python client is governed over https (`SSL_CERT_FILE`). A
//! listener off loopback without TLS refuses to start, and runs with
//! `--allow-plaintext`, saying so in its metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::world::{json_lines, wait_for, Killed};
use common::{mg, ok, s};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test.sh installs it)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `host:port` of a URL.
fn host_port(url: &str) -> &str {
    url.split("://").nth(1).unwrap().trim_end_matches('/')
}

/// TLS 1.1 and 1.0 are refused by the server on `hp`.
fn old_tls_refused(name: &str, hp: &str, ca: &Path) {
    for old in ["-tls1_1", "-tls1"] {
        // SECLEVEL=0: so that the refusal is the server's, not openssl's own.
        let o = run(
            "openssl",
            &[
                "s_client",
                "-connect",
                hp,
                old,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-CAfile",
                s(ca),
            ],
        );
        let t = text(&o);
        assert!(!o.status.success(), "{name}: {old} was accepted:\n{t}");
        assert!(
            t.contains("alert") || t.contains("no peer certificate"),
            "{name} {old}:\n{t}"
        );
    }
}

/// `request` sent as plain HTTP to the TLS port `hp` gets no HTTP answer:
/// nothing, or a TLS alert record.
fn no_plain_http_answer(name: &str, hp: &str, request: &str) {
    let mut tcp = std::net::TcpStream::connect(hp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    let shown = String::from_utf8_lossy(&got);
    assert!(
        (got.is_empty() || got[0] == 0x15) && !shown.contains("HTTP/"),
        "{name}: plain HTTP got {shown:?}"
    );
}

/// The refusals every TLS port owes, with `ca` and a `client` pair it accepts.
fn refuses_what_it_must(name: &str, url: &str, path: &str, ca: &Path, client: (&Path, &Path), other_ca: &Path) {
    let hp = host_port(url);
    old_tls_refused(name, hp, ca);
    let o = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            hp,
            "-tls1_2",
            "-CAfile",
            s(ca),
            "-cert",
            s(client.0),
            "-key",
            s(client.1),
        ],
    );
    assert!(
        text(&o).contains("Verify return code: 0 (ok)"),
        "{name}: TLS 1.2\n{}",
        text(&o)
    );

    // Plain HTTP to the TLS port: never an HTTP answer.
    no_plain_http_answer(name, hp, &format!("GET {path} HTTP/1.1\r\nHost: {hp}\r\n\r\n"));

    let full = format!("{url}{path}");
    let curl = |extra: &[&str]| {
        let mut a = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(extra);
        a.push(&full);
        run("curl", &a)
    };
    let o = curl(&["--cacert", s(ca), "--cert", s(client.0), "--key", s(client.1)]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{name}: {}", text(&o));
    let o = curl(&["--cacert", s(ca)]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stdout) == "000",
        "{name}: served without a client certificate: {}",
        text(&o)
    );
    let o = curl(&["--cacert", s(other_ca), "--cert", s(client.0), "--key", s(client.1)]);
    assert_eq!(o.status.code(), Some(60), "{name}: a wrong CA: {}", text(&o));
}

#[test]
fn authority_witness_and_gateway_over_mutual_tls_refuse_old_tls_and_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = d.join("pki");
    ok(&mg(&[
        "dev",
        "ca",
        "--out",
        s(&pki),
        "--server",
        "authority=127.0.0.1,localhost",
        "--server",
        "witness=127.0.0.1",
        "--server",
        "gateway=127.0.0.1",
        "--server",
        "upstream=127.0.0.1",
        "--client",
        "admin=spiffe://example.org/admin",
        "--client",
        "node-1=spiffe://example.org/node/node-1",
        "--client",
        "scoring=spiffe://example.org/scoring",
    ]));
    let f = |n: &str| pki.join(n);
    let ca = f("ca.pem");
    let other = d.join("other");
    ok(&mg(&[
        "dev",
        "ca",
        "--out",
        s(&other),
        "--client",
        "stranger=spiffe://example.org/stranger",
    ]));
    let other_ca = other.join("ca.pem");

    // The authority: TLS with mutual TLS.
    let dev = d.join("dev");
    let authority = common::spawn_server(&[
        "dev",
        "serve",
        "--data",
        s(&dev),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&f("authority.pem")),
        "--tls-key",
        s(&f("authority.key")),
        "--tls-client-ca",
        s(&ca),
    ]);
    assert!(authority.url.starts_with("https://127.0.0.1:"), "{}", authority.url);
    let admin = (f("admin.pem"), f("admin.key"));
    refuses_what_it_must(
        "authority",
        &authority.url,
        "/healthz",
        &ca,
        (&admin.0, &admin.1),
        &other_ca,
    );

    // The witness, for the authority's log (its key read from the trust
    // root the authority serves, over mutual TLS).
    let w = d.join("witness");
    ok(&mg(&[
        "witness",
        "init",
        "--data",
        s(&w),
        "--name",
        "witness.example/w1",
    ]));
    let o = run(
        "curl",
        &[
            "-sf",
            "--cacert",
            s(&ca),
            "--cert",
            s(&admin.0),
            "--key",
            s(&admin.1),
            &format!("{}/api/v1/trust-root", authority.url),
        ],
    );
    let tr: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let log_vkey = tr["authority"]["log"]
        .as_str()
        .or_else(|| tr["doc"]["authority"]["log"].as_str())
        .unwrap_or_else(|| panic!("no log key in {tr}"))
        .to_owned();
    let witness = common::spawn_json_server(&[
        "--ca-bundle",
        s(&ca),
        "--client-cert",
        s(&admin.0),
        "--client-key",
        s(&admin.1),
        "witness",
        "serve",
        "--data",
        s(&w),
        "--listen",
        "127.0.0.1:0",
        "--log",
        &log_vkey,
        "--tls-cert",
        s(&f("witness.pem")),
        "--tls-key",
        s(&f("witness.key")),
        "--tls-client-ca",
        s(&ca),
    ]);
    assert!(witness.url.starts_with("https://"), "{}", witness.url);
    // The witness's only route is POST /add-checkpoint: a GET is 405, over TLS.
    let o = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            s(&ca),
            "--cert",
            s(&admin.0),
            "--key",
            s(&admin.1),
            &format!("{}/add-checkpoint", witness.url),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "405", "{}", text(&o));
    refuses_what_it_must_post("witness", &witness.url, &ca, &other_ca);

    // A model governed through the TLS authority by the CLI (--ca-bundle,
    // --client-cert), served by a gateway on mutual TLS in front of an
    // https:// inference server.
    let model = d.join("my-model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 4096]).unwrap();
    let upstream = modelgate_testkit::MockServer::start_tls(
        modelgate_testkit::Mock {
            chunks: 2,
            delay: Duration::from_millis(1),
        },
        &f("upstream.pem"),
        &f("upstream.key"),
    )
    .unwrap();
    assert!(upstream.url().starts_with("https://"));
    let config = ok(&mg(&[
        "--ca-bundle",
        s(&ca),
        "--client-cert",
        s(&admin.0),
        "--client-key",
        s(&admin.1),
        "dev",
        "govern",
        s(&model),
        "--data",
        s(&dev),
        "--upstream",
        upstream.url(),
        "--listen",
        "127.0.0.1:0",
    ]))
    .trim()
    .to_owned();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    let (head, callers) = toml.split_at(toml.find("[models.").unwrap());
    toml = format!(
        "{head}ca_file = \"{ca}\"\nclient_cert = \"{nc}\"\nclient_key = \"{nk}\"\n\
         tls_cert = \"{gc}\"\ntls_key = \"{gk}\"\ntls_client_ca = \"{ca}\"\n\n{callers}\n\
         [callers.scoring]\ncertificate = \"spiffe://example.org/scoring\"\nscopes = [\"dev/default\"]\n",
        ca = ca.display(),
        nc = f("node-1.pem").display(),
        nk = f("node-1.key").display(),
        gc = f("gateway.pem").display(),
        gk = f("gateway.key").display(),
    );
    std::fs::write(&config, &toml).unwrap();
    let token = std::fs::read_to_string(Path::new(&config).parent().unwrap().join("caller.token"))
        .unwrap()
        .trim()
        .to_owned();
    let mut node = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["node", "serve", "--config", &config, "--interval-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let events = json_lines(node.stdout.take().unwrap());
    let _node = Killed(node);
    let node_log = || std::fs::read_to_string(d.join("node.log")).unwrap_or_default();
    let listening = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&events, 30, "listening", |v| v.get("listening").is_some())
    }))
    .unwrap_or_else(|_| panic!("the node did not listen:\n{}", node_log()));
    let gateway = listening["listening"].as_str().unwrap().replace("http://", "https://");
    wait_for(&events, 60, "Serving", |v| v.to_string().contains("Serving"));

    let scoring = (f("scoring.pem"), f("scoring.key"));
    let chat = r#"{"model": "my-model", "messages": [{"role": "user", "content": "over tls"}]}"#;
    let call = |cert: &(std::path::PathBuf, std::path::PathBuf), token: Option<&str>| {
        let mut a = vec![
            "-s".to_owned(),
            "--cacert".into(),
            s(&ca).into(),
            "--cert".into(),
            s(&cert.0).into(),
            "--key".into(),
            s(&cert.1).into(),
            "-w".into(),
            "\n%{http_code}".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            chat.into(),
        ];
        if let Some(t) = token {
            a.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
        }
        a.push(format!("{gateway}/v1/chat/completions"));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        text(&run("curl", &a))
    };
    // By token (over a valid client certificate), and by certificate alone.
    let by_token = call(&admin, Some(&token));
    assert!(
        by_token.ends_with("\n200") && by_token.contains("echo: over tls"),
        "{by_token}"
    );
    let by_cert = call(&scoring, None);
    assert!(
        by_cert.ends_with("\n200") && by_cert.contains("echo: over tls"),
        "{by_cert}"
    );
    // A certificate of the CA that names no caller, without a token: refused.
    let nobody = call(&admin, None);
    assert!(nobody.ends_with("\n401"), "{nobody}");
    refuses_what_it_must(
        "gateway",
        &gateway,
        "/healthz",
        &ca,
        (&scoring.0, &scoring.1),
        &other_ca,
    );

    // The official openai client, over https, trusting the CA by SSL_CERT_FILE.
    if let Some(python) = common::installed_tool(
        "MODELGATE_OPENAI_PYTHON",
        "the openai package (scripts/reference-venv.sh openai)",
    ) {
        let script = r#"
import sys, openai
url, cert, key, token = sys.argv[1:5]
http = openai.DefaultHttpxClient(cert=(cert, key))
c = openai.OpenAI(base_url=url + "/v1", api_key=token, http_client=http, max_retries=0)
r = c.chat.completions.create(model="my-model", messages=[{"role": "user", "content": "from openai"}])
print(r.choices[0].message.content)
try:
    openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0).models.list()
    print("served without a client certificate")
except openai.APIConnectionError as e:
    print("refused:", repr(e.__cause__))
"#;
        let o = Command::new(python)
            .args(["-c", script, &gateway, s(&admin.0), s(&admin.1), &token])
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap();
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("echo: from openai"), "{t}");
        assert!(t.contains("refused:") && t.contains("CERTIFICATE_REQUIRED"), "{t}");
    }

    // An expired server certificate: clients refuse it.
    let expired = modelgate_demo::ca::Ca::open_or_make(&pki, 0, 1).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (ec, ek) = expired
        .issue(&modelgate_demo::ca::Leaf {
            name: "expired".into(),
            names: vec!["127.0.0.1".into()],
            usage: modelgate_demo::ca::Usage::Server,
            not_before: now - 10 * 86_400,
            not_after: now - 86_400,
        })
        .unwrap();
    let w2 = d.join("witness-2");
    ok(&mg(&[
        "witness",
        "init",
        "--data",
        s(&w2),
        "--name",
        "witness.example/w2",
    ]));
    let stale = common::spawn_json_server(&[
        "witness",
        "serve",
        "--data",
        s(&w2),
        "--listen",
        "127.0.0.1:0",
        "--log",
        &log_vkey,
        "--tls-cert",
        s(&ec),
        "--tls-key",
        s(&ek),
    ]);
    let o = run(
        "curl",
        &["-s", "--cacert", s(&ca), &format!("{}/add-checkpoint", stale.url)],
    );
    assert_eq!(o.status.code(), Some(60), "an expired certificate: {}", text(&o));
    assert!(
        text(&run(
            "curl",
            &["-sv", "--cacert", s(&ca), &format!("{}/add-checkpoint", stale.url)]
        ))
        .contains("expired"),
        "curl does not say the certificate expired"
    );

    // SIGHUP reloads the pair (the process lives on: SIGHUP's default would
    // end it); a pair that does not load, written over the files, is
    // refused and counted, and the old one serves on.
    let metrics = || {
        text(&run(
            "curl",
            &[
                "-s",
                "--cacert",
                s(&ca),
                "--cert",
                s(&admin.0),
                "--key",
                s(&admin.1),
                &format!("{}/metrics", authority.url),
            ],
        ))
    };
    let before = metrics();
    assert!(before.contains("modelgate_tls_reloads_total 0"), "{before}");
    let pid = authority.child.id().to_string();
    assert!(run("kill", &["-HUP", &pid]).status.success());
    let (m, _) = common::world::eventually(10, "the SIGHUP reload", || {
        let m = metrics();
        m.contains("modelgate_tls_reloads_total 1").then_some(m)
    });
    assert!(m.contains("modelgate_tls_reload_failures_total 0"), "{m}");
    std::fs::copy(f("witness.key"), f("authority.key")).unwrap();
    let (m, _) = common::world::eventually(10, "the refused reload", || {
        let m = metrics();
        m.contains("modelgate_tls_reload_failures_total 1").then_some(m)
    });
    assert!(m.contains("modelgate_tls_reloads_total 1"), "{m}");
    let o = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            host_port(&authority.url),
            "-CAfile",
            s(&ca),
            "-cert",
            s(&admin.0),
            "-key",
            s(&admin.1),
        ],
    );
    assert!(text(&o).contains("Verify return code: 0 (ok)"), "{}", text(&o));
}

/// [`refuses_what_it_must`] for a port whose route takes POST only.
fn refuses_what_it_must_post(name: &str, url: &str, ca: &Path, other_ca: &Path) {
    let hp = host_port(url);
    old_tls_refused(name, hp, ca);
    let o = run("curl", &["-s", "--cacert", s(ca), &format!("{url}/add-checkpoint")]);
    assert!(!o.status.success(), "{name}: served without a client certificate");
    let o = run(
        "curl",
        &["-s", "--cacert", s(other_ca), &format!("{url}/add-checkpoint")],
    );
    assert_eq!(o.status.code(), Some(60), "{name}: a wrong CA: {}", text(&o));
    no_plain_http_answer(
        name,
        hp,
        "POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
}

#[test]
fn plain_http_off_loopback_refuses_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let o = mg(&["authority", "serve", "--data", s(&data), "--listen", "0.0.0.0:0"]);
    let e = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("not a loopback address") && e.contains("--allow-plaintext"),
        "{e}"
    );
    let w = dir.path().join("w");
    ok(&mg(&[
        "witness",
        "init",
        "--data",
        s(&w),
        "--name",
        "witness.example/w",
    ]));
    let logdir = dir.path().join("log");
    let vkey = ok(&mg(&[
        "authority",
        "init",
        "--data",
        s(&logdir),
        "--origin",
        "test.example/log",
    ]));
    let o = mg(&[
        "witness",
        "serve",
        "--data",
        s(&w),
        "--listen",
        "0.0.0.0:0",
        "--log",
        vkey.trim(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("not a loopback address"),
        "{}",
        common::stderr(&o)
    );

    let a = common::spawn_server(&[
        "authority",
        "serve",
        "--data",
        s(&data),
        "--listen",
        "0.0.0.0:0",
        "--allow-plaintext",
    ]);
    let port = a.url.rsplit(':').next().unwrap();
    let metrics = common::world::get_text(&format!("http://127.0.0.1:{port}/metrics"));
    assert!(metrics.contains("modelgate_plaintext_off_loopback 1"), "{metrics}");

    // A half-given pair names what is missing; an unreadable file is named.
    let o = mg(&[
        "authority",
        "serve",
        "--data",
        s(&data),
        "--tls-cert",
        "/nonexistent/cert.pem",
    ]);
    assert!(common::stderr(&o).contains("needs its key"), "{}", common::stderr(&o));
    let o = mg(&[
        "authority",
        "serve",
        "--data",
        s(&data),
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("/nonexistent/cert.pem"),
        "{}",
        common::stderr(&o)
    );
}
