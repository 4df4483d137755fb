//! The console in a real browser (Debian's Chromium, headless, driven by
//! playwright-core from `tests/browser/`; `.ci/run` installs both): a dev
//! authority, a node serving a model whose name is hostile markup, a hostile
//! exception and policy; `tests/browser/console.mjs` loads every page,
//! checks what it shows and that nothing hostile runs, runs axe-core, and
//! follows a containment live on the dashboard. Missing Chromium or the npm
//! packages fail this test; it never skips. With MODELGATE_SCREENSHOTS=DIR
//! it saves a screenshot of each page there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{mg, ok, s, Server};

#[test]
fn the_console_in_chromium() {
    let (browser, chromium) = common::browser_tools();

    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let authority = common::dev_serve(&dev);
    let url = authority.url.clone();

    let model = dir.path().join("my-model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 4096]).unwrap();
    let mock = modelgate_testkit::MockServer::start(modelgate_testkit::Mock {
        chunks: 2,
        delay: Duration::from_millis(1),
    })
    .unwrap();
    let name = "<script>alert(1)</script>";
    let (config, _) = common::dev_govern(&dev, &model, mock.url(), name, "127.0.0.1:0");
    let config = s(&config).to_owned();
    let admin = std::fs::read_to_string(dev.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let digest = ok(&mg(&["digest", s(&model)])).trim().to_owned();
    ok(&mg(&[
        "exception",
        &digest,
        "--scope",
        "staging/*",
        "--expires",
        "+1d",
        "--tier",
        "low",
        "--ticket",
        "\"><img src=x onerror=alert(2)>",
        "--reason",
        "<script>alert(3)</script>",
        "--key",
        s(&dev.join("dev-keys/dev-approver-1.key")),
        "--authority",
        &url,
        "--token",
        &admin,
    ]));
    let policy = dir.path().join("p.cedar");
    std::fs::write(
        &policy,
        "// <script>alert(3)</script>\n@id(\"dev-permit-approved\") permit(principal, action, resource);\n",
    )
    .unwrap();
    ok(&mg(&[
        "policy",
        "publish",
        s(&policy),
        "--key",
        s(&dev.join("dev-keys/dev-policy-admin.key")),
        "--authority",
        &url,
        "--token",
        &admin,
    ]));

    let mut node = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["node", "serve", "--config", &config, "--interval-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(node.stdout.take().unwrap());
    let _node = Server {
        child: node,
        url: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut gateway = String::new();
    for l in out.lines() {
        let l = l.unwrap();
        if let Some(u) = serde_json::from_str::<serde_json::Value>(&l)
            .ok()
            .and_then(|v| v["listening"].as_str().map(str::to_owned))
        {
            gateway = u;
        }
        if l.contains("\"state\":\"Serving\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the node never served");
    }
    // Three governed calls, replicated to the authority for the lineage explorer.
    let caller = std::fs::read_to_string(dev.join("node/caller.token")).unwrap();
    for _ in 0..3 {
        let st = common::world::agent()
            .post(&format!("{gateway}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer {}", caller.trim()))
            .header("Content-Type", "application/json")
            .send(serde_json::json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(st, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::world::get_json(&format!("{url}/api/v1/lineage?decision=allow"))["records"]
        .as_array()
        .map_or(0, Vec::len)
        < 3
    {
        assert!(Instant::now() < deadline, "the calls were not replicated");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its first heartbeat follows its first pass.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = common::world::get_json(&format!("{url}/health.json"));
        if v["nodes"][0]["status"] == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat reached the authority: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut cmd = Command::new("node");
    cmd.arg(browser.join("console.mjs"))
        .arg(&url)
        .arg(model.join("weights.bin"))
        .env("CHROMIUM", &chromium);
    if let Ok(shots) = std::env::var("MODELGATE_SCREENSHOTS") {
        cmd.arg(shots);
    }
    let o = cmd.output().expect("node (Node.js) is missing");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("{said}");
    assert!(o.status.success(), "the browser checks failed:\n{said}");
    assert!(said.contains("every browser check passed"), "{said}");
}
