//! The runtime node with real processes: `exec` starts and stops a real
//! server process; `node serve` proxies a real (mock) inference server,
//! records lineage, anchors it, and serves proofs that verify offline; model
//! files are really changed, the lineage store is really locked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::world::{
    agent, approved_node, call, caller_table, chat, eventually, free_port, get_json, revoke, start_gateway,
    start_gateway_at, wait_for, world, Killed,
};
use common::{mg_line, ok, s, stderr, stdout};
use serde_json::{json, Value};

fn wait_exit(c: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "the process did not exit within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `modelgate exec` running `sh -c script` for the model `credit`, once the
/// script has written "started" to `marker`.
fn start_exec(config: &std::path::Path, extra: &[&str], script: &str, marker: &std::path::Path) -> Killed {
    let exec = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "exec",
            "--config",
            s(config),
            "--model",
            "credit",
            "--interval-ms",
            "100",
        ])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exec = Killed(exec);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(marker).unwrap_or_default().contains("started") {
        assert!(Instant::now() < deadline, "the server never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    exec
}

#[test]
fn exec_runs_the_server_only_while_the_model_is_proven() {
    let w = world();
    let d = w.dir.path();
    let config = approved_node(&w, "");
    let marker = d.join("server.log");
    let server = format!(
        "echo \"started $MODELGATE_MODEL_DIGEST\" >> {m}; trap 'echo term >> {m}; exit 0' TERM; while true; do sleep 0.05; done",
        m = s(&marker)
    );
    let mut exec = start_exec(&config, &[], &server, &marker);
    let err = exec.0.stderr.take().unwrap();
    assert!(std::fs::read_to_string(&marker).unwrap().contains(&w.digest));
    // One byte changed in place, length and modification time restored:
    // the cheap fingerprint cannot see it; inotify does.
    let weights = d.join("model/weights.bin");
    let mtime = std::fs::metadata(&weights).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let changed_at = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&weights).unwrap();
        f.write_all(b"weightz").unwrap();
        f.set_modified(mtime).unwrap();
    }
    assert_eq!(std::fs::metadata(&weights).unwrap().modified().unwrap(), mtime);
    let status = wait_exit(&mut exec.0, 10);
    let took = changed_at.elapsed();
    let mut text = String::new();
    BufReader::new(err).read_to_string(&mut text).unwrap();
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(text.contains("contained: UnauthorizedModification"), "{text}");
    assert!(text.contains("the server stopped on SIGTERM"), "{text}");
    assert!(std::fs::read_to_string(&marker).unwrap().contains("term"));
    assert!(took < Duration::from_secs(1), "contained after {took:?}");
    eprintln!("exec: changed byte → server stopped after {took:?}");

    // Still changed: exec refuses to start the server at all.
    std::fs::write(&marker, "").unwrap();
    let o = mg_line(&format!(
        "exec --config {} --model credit --interval-ms 100 -- sh -c 'echo started >> {}'",
        s(&config),
        s(&marker)
    ));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("UnauthorizedModification"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "",
        "a contained model's server started"
    );

    // Restored, and a server that ignores SIGTERM: killed after the grace period on revocation.
    std::fs::write(&weights, "weights").unwrap();
    let stubborn = format!(
        "echo started >> {m}; trap '' TERM; while true; do sleep 0.05; done",
        m = s(&marker)
    );
    let mut exec = start_exec(&config, &["--grace-seconds", "1"], &stubborn, &marker);
    revoke(&w, "drift", "INC-1");
    let status = wait_exit(&mut exec.0, 10);
    let mut text = String::new();
    exec.0.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(
        text.contains("UnverifiableTransition") && text.contains("Revoked"),
        "{text}"
    );
    assert!(text.contains("ignored SIGTERM for 1 s and was killed"), "{text}");
}

const TOKEN: &str = "scoring-service-secret";
const AUDITOR: &str = "auditor-secret";

/// A caller that reads every lineage record and calls nothing.
fn auditor_table() -> String {
    format!("{}lineage = \"all\"\n", caller_table("auditor", AUDITOR, &[], &[]))
}

/// GET a JSON document with a bearer token.
fn get_json_as(url: &str, token: &str) -> Value {
    let mut r = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// A streamed chat call by the test's caller; the answer's body is read by the test.
fn stream(url: &str) -> ureq::http::Response<ureq::Body> {
    agent()
        .post(&format!("{url}/v1/chat/completions"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(chat(true).to_string())
        .unwrap()
}

/// Replace `from` by `to` in a node's configuration file (which must contain it).
fn edit_config(config: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from:?} is not in {}", config.display());
    std::fs::write(config, text.replace(from, to)).unwrap();
}

/// A minimal OTLP/HTTP collector: answers 200 to every POST and keeps the bodies.
/// Each POST the collector received: request line and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn collector() -> (String, Received) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in l.incoming().map_while(Result::ok) {
            let g = std::sync::Arc::clone(&g);
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut start = String::new();
                    if r.read_line(&mut start).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    g.lock()
                        .unwrap()
                        .push((start.trim().to_owned(), String::from_utf8_lossy(&body).into_owned()));
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
                        .unwrap();
                }
            });
        }
    });
    (url, got)
}

#[test]
fn the_gateway_governs_records_and_proves_every_call() {
    let w = world();
    let d = w.dir.path();
    let (otlp, spans) = collector();
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\nheartbeat_interval_seconds = 1\notlp_endpoint = \"{otlp}\"\n{}",
            caller_table(
                "scoring-service",
                TOKEN,
                &["credit-team"],
                &["prod/credit/scoring", "prod/risk/review"]
            ) + &auditor_table()
        ),
    );
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    let models = get_json(&format!("{}/v1/models", g.url));
    assert_eq!(models["data"][0]["id"], "credit", "{models}");
    assert_eq!(models["data"][0]["digest"], w.digest.as_str());

    // Allowed: forwarded, with lineage headers; the trace id goes upstream, the caller's token does not.
    let (st, h, body) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: score applicant 42");
    let id = h["x-modelgate-lineage-id"].to_str().unwrap().to_owned();
    assert!(
        h["x-modelgate-checkpoint-size"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > id.parse().unwrap()
    );
    let seen = h["x-seen-traceparent"].to_str().unwrap();
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !seen.contains("00f067aa0ba902b7"),
        "{seen}"
    );
    assert_eq!(h["x-seen-authorization"], "no");

    // Denied: no token (401), a scope the caller may not use (403), an unknown
    // model (404), and a scope the caller may use but no approval covers (the
    // decision's own code).
    // Each names the EG-MODEL-001 check that failed, and the lineage record
    // written for it.
    for (token, scope, body, want, check) in [
        (
            None,
            None,
            chat(false),
            (401, "invalid_api_key"),
            "ModelScopeContinuity",
        ),
        (
            Some(TOKEN),
            Some("prod/other"),
            chat(false),
            (403, "ScopeNotPermitted"),
            "ModelScopeContinuity",
        ),
        (
            Some(TOKEN),
            None,
            json!({"model": "nope", "messages": []}),
            (404, "model_not_found"),
            "ModelRuntimeContinuity",
        ),
        (
            Some(TOKEN),
            Some("prod/risk/review"),
            chat(false),
            (403, "ScopeNotApproved"),
            "ModelScopeContinuity",
        ),
    ] {
        let (st, h, b) = call(&g.url, token, scope, &body);
        assert_eq!((st, b["error"]["code"].as_str()), (want.0, Some(want.1)), "{b}");
        assert_eq!(b["error"]["check"], check, "{b}");
        assert_eq!(h["x-modelgate-check"], check);
        let id = h["x-modelgate-lineage-id"].to_str().unwrap();
        let rec = get_json_as(&format!("{}/lineage/{id}", g.url), AUDITOR);
        assert_eq!(
            (
                rec["records"][0]["record"]["type"].as_str(),
                rec["records"][0]["record"]["check"].as_str()
            ),
            (Some("denial"), Some(check)),
            "{rec}"
        );
    }

    // Streaming passes through incrementally: the first event arrives long before the last.
    let t0 = Instant::now();
    let mut r = stream(&g.url);
    assert_eq!(r.status().as_u16(), 200);
    let stream_id = r.headers()["x-modelgate-lineage-id"].to_str().unwrap().to_owned();
    let mut lines = BufReader::new(r.body_mut().as_reader()).lines();
    let first = lines.next().unwrap().unwrap();
    let first_at = t0.elapsed();
    assert!(first.starts_with("data: {"), "{first}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let all_at = t0.elapsed();
    assert!(rest.iter().any(|l| l == "data: [DONE]"), "{rest:?}");
    assert!(
        all_at >= Duration::from_millis(400) && first_at * 3 < all_at,
        "first event after {first_at:?}, all after {all_at:?}: buffered?"
    );

    // A client that disconnects mid-stream leaves a completion record saying so.
    let addr = g.url.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    let req_body = chat(true).to_string();
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req_body}",
        req_body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: {") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let dropped_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-modelgate-lineage-id: "))
        .unwrap()
        .trim()
        .to_owned();
    drop(sock);

    // Proofs: each call's records, anchored, verify offline with the pinned trust root only.
    let lineage = |id: &str| -> Value { get_json_as(&format!("{}/lineage/{id}", g.url), TOKEN) };
    let (proof, _) = eventually(15, "an anchored proof", || {
        let r = agent()
            .get(&format!("{}/lineage/{id}", g.url))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        (r.status().as_u16() == 200).then_some(()).and_then(|_| {
            let v = lineage(&id);
            (v["anchored"] == true && v["records"].as_array().unwrap().len() == 2).then_some(v)
        })
    });
    let req = &proof["records"][0]["record"];
    assert_eq!(req["type"], "request");
    assert_eq!(req["principal"], "scoring-service");
    assert_eq!(req["digest"], w.digest.as_str());
    assert_eq!(req["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(req.get("body").is_none(), "prompts are kept as digests only by default");
    let done = &proof["records"][1]["record"];
    assert_eq!(
        (done["type"].as_str(), done["status"].as_u64()),
        (Some("completion"), Some(200))
    );
    assert_eq!(done["usage"]["completion_tokens"], 2, "{done}");
    let pf = d.join("proof.json");
    std::fs::write(&pf, proof.to_string()).unwrap();
    let trust = w.data.join("trust-root.dsse.json");
    let out = ok(&mg_line(&format!(
        "lineage verify {} --trust-root {}",
        s(&pf),
        s(&trust)
    )));
    assert!(out.contains("verified: 2 record(s) of node node-1"), "{out}");
    // One changed byte of a proven record: refused.
    let mut bad = proof.clone();
    let entry = bad["proof"]["records"][0]["entry"].as_str().unwrap().to_owned();
    let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &entry).unwrap();
    let at = raw.iter().position(|b| *b == b'4').unwrap();
    raw[at] = b'5';
    bad["proof"]["records"][0]["entry"] =
        json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw));
    std::fs::write(&pf, bad.to_string()).unwrap();
    let o = mg_line(&format!("lineage verify {} --trust-root {}", s(&pf), s(&trust)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not in the node's checkpoint"), "{}", stderr(&o));
    // The stream and the disconnected stream: completion outcomes recorded.
    let (outcomes, _) = eventually(15, "completion records", || {
        let a = lineage(&stream_id);
        let b = lineage(&dropped_id);
        let oa = a["records"][1]["record"]["outcome"].as_str().map(str::to_owned)?;
        let ob = b["records"][1]["record"]["outcome"].as_str().map(str::to_owned)?;
        Some((oa, ob, a["records"][1]["record"]["usage"].clone()))
    });
    assert_eq!(outcomes.0, "complete");
    assert_eq!(outcomes.1, "client-disconnected");
    assert_eq!(
        outcomes.2["completion_tokens"], 8,
        "the usage from the stream's last event"
    );

    // Traces went to the collector: our span, a child of the caller's, with GenAI attributes.
    let (body, _) = eventually(10, "an OTLP export", || {
        let g = spans.lock().unwrap();
        g.iter()
            .find(|(start, b)| start.starts_with("POST /v1/traces") && b.contains("\"gen_ai.usage.output_tokens\""))
            .map(|(_, b)| b.clone())
    });
    let v: Value = serde_json::from_str(&body).unwrap();
    let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736", "{span}");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7", "{span}");
    assert_eq!(span["name"], "chat credit", "{span}");
    let attr = |k: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(attr("gen_ai.request.model")["stringValue"], "credit");
    assert_eq!(attr("gen_ai.operation.name")["stringValue"], "chat");
    assert_eq!(attr("modelgate.model.digest")["stringValue"], w.digest.as_str());
    // Denials are spans too, marked with the reason.
    eventually(10, "a denial span", || {
        let g = spans.lock().unwrap();
        g.iter()
            .any(|(_, b)| b.contains("\"error.type\"") && b.contains("\"ScopeNotApproved\""))
            .then_some(())
    });

    // Metrics, and the heartbeat the authority now holds.
    let m = agent()
        .get(&format!("{}/metrics", g.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        m.contains("modelgate_gateway_denials_total{reason=\"invalid_api_key\",check=\"ModelScopeContinuity\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("modelgate_gateway_denials_total{reason=\"ScopeNotApproved\",check=\"ModelScopeContinuity\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("modelgate_model_state{model=\"credit\",state=\"Serving\"")
            && m.contains("modelgate_model_lifecycle_step{model=\"credit\",step=\"AuditVerified\"} 10"),
        "{m}"
    );
    // Where a call's time goes: every allowed call so far was recorded, forwarded and
    // answered, so the three histograms count the same calls, all within +Inf.
    let metric = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
    };
    let allowed = metric("modelgate_lineage_append_seconds_count ");
    assert!(allowed >= 1, "{m}");
    for h in [
        "modelgate_gateway_before_forward_seconds",
        "modelgate_gateway_upstream_seconds",
    ] {
        assert_eq!(metric(&format!("{h}_count ")), allowed, "{h}\n{m}");
        assert_eq!(metric(&format!("{h}_bucket{{le=\"+Inf\"}} ")), allowed, "{h}\n{m}");
    }
    let (hb, _) = eventually(10, "a heartbeat", || {
        let n = get_json(&format!("{}/api/v1/nodes", w.server.url));
        let hb = n[0]["last_heartbeat"].clone();
        (hb["summary"]["counters"]["requests"].as_u64().unwrap_or(0) >= 5).then_some(hb)
    });
    assert_eq!(hb["summary"]["models"]["credit"]["state"], "Serving", "{hb}");

    // A changed model file: 503 UnauthorizedModification within a second.
    let weights = d.join("model/weights.bin");
    std::fs::write(&weights, "weightz").unwrap();
    let (_, took) = eventually(5, "containment", || {
        let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
        (st == 503 && b["error"]["code"] == "UnauthorizedModification").then_some(())
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
    eprintln!("gateway: changed file refused after {took:?}");
    std::fs::write(&weights, "weights").unwrap();
    eventually(10, "recovery", || {
        (call(&g.url, Some(TOKEN), None, &chat(false)).0 == 200).then_some(())
    });

    // The lineage store held by another process: the record cannot be made durable, so no call.
    let db = config.parent().unwrap().join("node-data/lineage.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (503, Some("AuditDiscontinuity")),
        "{b}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    eventually(20, "recovery after the lock", || {
        (call(&g.url, Some(TOKEN), None, &chat(false)).0 == 200).then_some(())
    });

    // Revoked: 403 within a second.
    let revoked = Instant::now();
    revoke(&w, "drift", "INC-2");
    let (code, _) = eventually(5, "revocation", || {
        let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
        (st != 200).then(|| (st, b["error"]["code"].as_str().unwrap_or("").to_owned()))
    });
    let took = revoked.elapsed();
    // The decision's own code, whether the call met the decision itself or
    // the model already contained for it.
    assert_eq!(code, (403, "Revoked".to_owned()));
    assert!(
        took < Duration::from_secs(2),
        "revocation took {took:?} including the CLI"
    );
    // Once the loop has contained it too, still 403 Revoked.
    std::thread::sleep(Duration::from_millis(600));
    let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("Revoked")), "{b}");
    let (_, _) = eventually(5, "the model leaving /v1/models", || {
        let m = get_json(&format!("{}/v1/models", g.url));
        m["data"].as_array().unwrap().is_empty().then_some(())
    });
}

#[test]
fn the_gateway_contains_when_the_authority_is_gone_past_max_staleness() {
    let mut w = world();
    let _ = &mut w;
    let config = approved_node(
        &w,
        &format!(
            "max_in_flight = 1\n{}",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    edit_config(&config, "max_staleness_seconds = 30", "max_staleness_seconds = 2");
    let mut g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    assert_eq!(call(&g.url, Some(TOKEN), None, &chat(false)).0, 200);
    // One call at most (max_in_flight = 1): while a stream is in progress the
    // next call is refused at once with 429, and admitted again afterwards.
    let mut r = stream(&g.url);
    let mut lines = BufReader::new(r.body_mut().as_reader()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("data: "));
    let t = Instant::now();
    let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!((st, b["error"]["code"].as_str()), (429, Some("overloaded")), "{b}");
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "refused only after {:?}",
        t.elapsed()
    );
    assert!(lines.map_while(Result::ok).any(|l| l == "data: [DONE]"));
    let (ok_again, _) = eventually(5, "admission after the stream", || {
        let (st, _, _) = call(&g.url, Some(TOKEN), None, &chat(false));
        (st == 200).then_some(st)
    });
    assert_eq!(ok_again, 200);

    // The inference server gone: 502, and the call's completion record says why.
    g.mock.stop();
    let (st, h, b) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (502, Some("upstream_unreachable")),
        "{b}"
    );
    let id = h["x-modelgate-lineage-id"].to_str().unwrap().to_owned();
    let (done, _) = eventually(5, "an upstream-error completion", || {
        let v = get_json_as(&format!("{}/lineage/{id}", g.url), TOKEN);
        let r = v["records"][1]["record"].clone();
        (r["type"] == "completion").then_some(r)
    });
    assert_eq!(
        (done["outcome"].as_str(), done["status"].as_u64()),
        (Some("upstream-error"), Some(502)),
        "{done}"
    );
    assert!(done["error"].as_str().is_some_and(|e| !e.is_empty()), "{done}");
    // The authority replaced by a black hole on its port: connections are
    // accepted and never answered, so the node's loop hangs in its HTTP
    // timeout (10 s). The gateway must not wait for the loop: an aged view
    // proves nothing.
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    let port = w.server.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let hole = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().map_while(Result::ok) {
            held.push(c);
        }
    });
    let stopped = Instant::now();
    let (_, _) = eventually(10, "SyncInterrupted", || {
        let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
        (st == 503 && b["error"]["code"] == "SyncInterrupted").then_some(())
    });
    let after = stopped.elapsed();
    // Not before the bound (a short outage is tolerated), and not only when
    // the hung loop times out.
    assert!(after >= Duration::from_secs(1), "contained after only {after:?}");
    assert!(after < Duration::from_secs(6), "contained only after {after:?}");
}

/// The remaining containment reasons against a running authority, with the
/// real binary: a bundle re-signed by a key the trust root does not know
/// (SignatureInvalid), and a node whose persisted state no longer matches its
/// own replay of the log (StateDivergence, even after the log grew).
#[test]
fn node_status_asks_the_running_node_and_reads_the_data_directory_only_without_one() {
    let w = world();
    let config = approved_node(&w, "");
    let listen = format!("127.0.0.1:{}", free_port());
    let status = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"));
        c.args(["node", "status", "--config", s(&config)])
            .env("MODELGATE_NODE_LISTEN", &listen);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let g = start_gateway_at(&config, &listen);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    // While it serves, the data directory is the node's (its lineage log is
    // locked): status asks the node itself.
    let o = status(false);
    let said = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{said}{}", stderr(&o));
    assert!(
        said.contains(&format!("from the running node at http://{listen}/status")),
        "{said}"
    );
    assert!(said.contains("credit: Serving"), "{said}");
    let v: Value = serde_json::from_str(&stdout(&status(true))).unwrap();
    assert_eq!(v["source"]["running"], format!("http://{listen}/status"), "{v}");
    assert_eq!(v["models"]["credit"]["state"], "Serving", "{v}");
    drop(g);
    let o = status(false);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("no node answers at"), "{}", stderr(&o));
    assert!(stdout(&o).contains("credit: Serving"), "{}", stdout(&o));
}

#[test]
fn node_status_contains_on_an_untrusted_signer_and_on_a_diverged_state() {
    let w = world();
    let d = w.dir.path();
    let config = approved_node(&w, "");
    let status = |cfg: &std::path::Path| -> Value {
        let o = mg_line(&format!("node status --config {} --json", s(cfg)));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        // Exit 0 exactly when every model is Serving.
        let serving = v["models"].as_array().unwrap().iter().all(|m| m["state"] == "Serving");
        assert_eq!(o.status.code(), Some(if serving { 0 } else { 1 }), "{v}");
        v
    };
    let v = status(&config);
    assert_eq!(v["models"][0]["state"], "Serving", "{v}");
    // Re-signed by a stranger's key: the files are intact, the signer is not trusted.
    let original = std::fs::read(d.join("model/model.sig")).unwrap();
    let o = mg_line(&format!(
        "keygen --algorithm ecdsa-p256 --out {}",
        s(&d.join("stranger"))
    ));
    ok(&o);
    ok(&mg_line(&format!(
        "sign {} --key {}",
        s(&d.join("model")),
        s(&d.join("stranger.key"))
    )));
    let v = status(&config);
    assert_eq!(v["models"][0]["reason"], "SignatureInvalid", "{v}");
    std::fs::write(d.join("model/model.sig"), &original).unwrap();
    assert_eq!(status(&config)["models"][0]["state"], "Serving");
    // The persisted state digest edited: the replay disagrees, the node stops.
    let trusted = config.parent().unwrap().join("node-data/trusted-checkpoint.json");
    let mut t: Value = serde_json::from_slice(&std::fs::read(&trusted).unwrap()).unwrap();
    t["state_digest"] = json!("ab".repeat(32));
    std::fs::write(&trusted, t.to_string()).unwrap();
    // The log grows past the persisted size first: the check still applies.
    revoke(&w, "test", "INC-3");
    let v = status(&config);
    assert_eq!(v["sync"]["reason"], "StateDivergence", "{v}");
    assert_eq!(v["models"][0]["state"], "Contained", "{v}");
}

/// Once anchored, the lineage log is part of the governed record: a node
/// restarted with its lineage log lost (or its whole data directory) serves
/// nothing, because the governance log remembers what it anchored.
#[test]
fn a_node_that_lost_its_anchored_lineage_serves_nothing() {
    let w = world();
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\n{}",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    assert_eq!(call(&g.url, Some(TOKEN), None, &chat(false)).0, 200);
    let (anchored, _) = eventually(15, "an anchor covering the call", || {
        let n = get_json(&format!("{}/api/v1/nodes", w.server.url));
        n[0]["anchor"]["size"].as_u64().filter(|s| *s >= 3)
    });
    drop(g);
    let data = config.parent().unwrap().join("node-data");
    for f in std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()) {
        if f.file_name().unwrap().to_str().unwrap().starts_with("lineage.db") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let g = start_gateway(&config);
    let v = wait_for(&g.events, 20, "a state", |v| v.get("state").is_some());
    assert_eq!(v["state"], "Contained", "never Serving first: {v}");
    assert_eq!(v["reason"], "AuditDiscontinuity", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{anchored} were anchored")),
        "{v}"
    );
    let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (503, Some("AuditDiscontinuity")),
        "{b}"
    );
    drop(g);
    // The whole data directory gone: the governance log still remembers.
    std::fs::remove_dir_all(&data).unwrap();
    let g = start_gateway(&config);
    let v = wait_for(&g.events, 20, "a state", |v| v.get("state").is_some());
    assert_eq!(
        (v["state"].as_str(), v["reason"].as_str()),
        (Some("Contained"), Some("AuditDiscontinuity")),
        "{v}"
    );
}

/// What a proxy in front of the authority does with writes.
#[derive(Clone, Copy)]
enum Writes {
    /// Answer 503: an authority in read-only maintenance, a proxy that drops POSTs.
    Refuse,
    /// Forward them after this long: a slow authority (reads stay fast).
    Delay(Duration),
}

/// An authority that answers reads but refuses every write (503): what a
/// node sees when its anchors cannot be logged. Returns its URL.
fn read_only_authority(authority: &str) -> String {
    proxy_authority(authority, Writes::Refuse)
}

/// A proxy in front of `authority` that forwards reads and treats writes as
/// `writes` says. Returns its URL.
fn proxy_authority(authority: &str, writes: Writes) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = authority.to_owned();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    return;
                }
                let mut length = 0usize;
                let mut content_type = String::from("application/json");
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if k.eq_ignore_ascii_case("content-type") {
                            content_type = v.trim().to_owned();
                        }
                    }
                }
                let mut body = vec![0u8; length];
                let _ = r.read_exact(&mut body);
                let mut parts = first.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
                let (status, answer) = if method == "GET" {
                    match agent().get(&format!("{upstream}{path}")).call() {
                        Ok(mut a) => (a.status().as_u16(), a.body_mut().read_to_vec().unwrap_or_default()),
                        Err(e) => (502, e.to_string().into_bytes()),
                    }
                } else if let Writes::Delay(d) = writes {
                    std::thread::sleep(d);
                    let sent = agent()
                        .post(&format!("{upstream}{path}"))
                        .header("Content-Type", &content_type)
                        .send(&body[..]);
                    match sent {
                        Ok(mut a) => (a.status().as_u16(), a.body_mut().read_to_vec().unwrap_or_default()),
                        Err(e) => (502, e.to_string().into_bytes()),
                    }
                } else {
                    (503, b"{\"error\":\"read-only\"}".to_vec())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = conn.write_all(&answer);
            });
        }
    });
    url
}

/// Lineage that cannot be anchored contains the node once it has been
/// un-anchored longer than the trust root's bound (issue 8: "Unanchored
/// longer than the configured bound → AuditDiscontinuity"), and not before.
#[test]
fn the_gateway_contains_when_lineage_stays_unanchored_past_the_bound() {
    let w = world();
    let d = w.dir.path();
    let url = &w.server.url;
    // Trust root v3: the same principals, anchors due within 4 s.
    let root_key = w.data.join("offline-root-keys/root-1.key");
    ok(&mg_line(&format!(
        "trust edit --authority {url} --out {}",
        s(&d.join("v3.json"))
    )));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(d.join("v3.json")).unwrap()).unwrap();
    doc["freshness"]["anchor_max_age_seconds"] = json!(4);
    std::fs::write(d.join("v3.json"), doc.to_string()).unwrap();
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        s(&d.join("v3.json")),
        s(&root_key),
        s(&d.join("v3.dsse.json"))
    )));
    let root_token = common::world::token(&w.data, "root");
    ok(&mg_line(&format!(
        "submit {} --authority {url} --token {root_token}",
        s(&d.join("v3.dsse.json"))
    )));
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\n{}",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    edit_config(
        &config,
        &format!("authority = \"{url}\""),
        &format!("authority = \"{}\"", read_only_authority(url)),
    );
    // The un-anchored clock cannot start before the node does.
    let t = Instant::now();
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    // Records are written, but no anchor can be logged: served until the bound.
    assert_eq!(call(&g.url, Some(TOKEN), None, &chat(false)).0, 200);
    let (code, waited) = eventually(20, "containment for un-anchored lineage", || {
        let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
        if st == 200 {
            std::thread::sleep(Duration::from_millis(200));
            return None;
        }
        Some((st, b["error"]["code"].as_str().unwrap_or("").to_owned()))
    });
    assert_eq!(code, (503, "AuditDiscontinuity".to_owned()));
    assert!(
        t.elapsed() > Duration::from_secs(4),
        "contained after {:?}, before the 4 s bound",
        t.elapsed()
    );
    assert!(waited < Duration::from_secs(10), "contained only after {waited:?}");
    let contained = wait_for(&g.events, 5, "the containment event", |v| {
        v["state"] == "Contained" && v["reason"] == "AuditDiscontinuity"
    });
    assert!(contained.to_string().contains("un-anchored"), "{contained}");
}

/// The trusted checkpoint is written (fsync and rename) when it changes, not on
/// every sync pass: four needless journal commits a second sat under the lineage
/// log's own fsyncs. A new inode is a rewrite.
#[test]
fn the_trusted_checkpoint_is_rewritten_only_when_the_log_moves() {
    use std::os::unix::fs::MetadataExt as _;
    let w = world();
    let config = approved_node(
        &w,
        &caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"]),
    );
    let trusted = config.parent().unwrap().join("node-data/trusted-checkpoint.json");
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    let ino = || std::fs::metadata(&trusted).unwrap().ino();
    // 30 passes at --interval-ms 100; the log may move by a heartbeat or two.
    let mut seen = vec![ino()];
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let i = ino();
        if seen.last() != Some(&i) {
            seen.push(i);
        }
    }
    assert!(seen.len() <= 4, "rewritten {} times in 30 passes", seen.len() - 1);
    // A revocation moves the log: the new checkpoint is persisted.
    let before = ino();
    revoke(&w, "test", "INC-9");
    wait_for(&g.events, 20, "Contained", |v| v["state"] == "Contained");
    eventually(5, "the trusted checkpoint rewritten", || {
        (ino() != before).then_some(())
    });
}

/// An authority URL that answers with redirects (to the real authority): the
/// node follows none of them, so its sync fails and `node status` exits 1.
#[test]
fn the_node_never_follows_a_redirect_away_from_its_authority() {
    let w = world();
    let config = approved_node(&w, "");
    let target = w.server.url.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    let redirected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&redirected);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if std::io::BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    // Served directly, the node is Serving (exit 0) ...
    ok(&mg_line(&format!("node status --config {}", s(&config))));
    // ... through the redirector it is not.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("authority = \"{}\"", w.server.url),
            &format!("authority = \"{redirector}\""),
        ),
    )
    .unwrap();
    let o = mg_line(&format!("node status --config {} --json", s(&config)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["sync"]["ok"], false, "{v}");
    assert_eq!(v["models"][0]["state"], "Contained", "{v}");
    assert!(redirected.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// An authority slow to take writes (every POST held 3 s; reads fast) beside
/// a 2 s staleness bound: the node's reports, heartbeats and anchors go out
/// from a thread of their own, so its passes keep the gateway's view fresh
/// and calls are served throughout. (With the writes posted from the loop,
/// each held its pass for 3 s and calls got 503 SyncInterrupted.)
#[test]
fn a_slow_authority_for_writes_does_not_age_the_gateway_into_sync_interrupted() {
    let w = world();
    let config = approved_node(
        &w,
        &format!(
            "anchor_interval_seconds = 1\nheartbeat_interval_seconds = 1\n{}",
            caller_table("scoring-service", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    edit_config(&config, "max_staleness_seconds = 30", "max_staleness_seconds = 2");
    let url = w.server.url.clone();
    edit_config(
        &config,
        &format!("authority = \"{url}\""),
        &format!(
            "authority = \"{}\"",
            proxy_authority(&url, Writes::Delay(Duration::from_secs(3)))
        ),
    );
    let g = start_gateway(&config);
    wait_for(&g.events, 20, "Serving", |v| v["state"] == "Serving");
    let until = Instant::now() + Duration::from_secs(8);
    let mut statuses = std::collections::BTreeMap::new();
    while Instant::now() < until {
        let (st, _, b) = call(&g.url, Some(TOKEN), None, &chat(false));
        let code = b["error"]["code"].as_str().unwrap_or("").to_owned();
        *statuses.entry((st, code)).or_insert(0) += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        [&(200, String::new())],
        "{statuses:?}"
    );
    // The slow writes still arrive: the node's heartbeat and an anchor reach the log.
    let (anchored, _) = eventually(15, "an anchor through the slow proxy", || {
        let nodes = common::world::get_json(&format!("{url}/api/v1/nodes"));
        nodes[0]["anchor"]["size"].as_u64().filter(|n| *n > 0)
    });
    assert!(anchored > 0);
}
