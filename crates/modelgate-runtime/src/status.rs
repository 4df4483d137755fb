//! `modelgate node status`: where each model stands. A running node is
//! asked (its `/status`, on the address its configuration listens on): it
//! holds the lineage log and the verified view, and only it knows what it
//! serves. With no node answering there, the status is worked out from the
//! data directory by one sync and lifecycle run, as a starting node would.

use modelgate_node::config::NodeConfig;
use serde_json::Value;

/// Where a status came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The running node's `/status`, at this URL.
    Running(String),
    /// No node answered at this URL: the data directory was read.
    DataDir(String),
}

/// The `/status` URL of the node `config` describes (a wildcard listen
/// address is asked on loopback).
pub fn status_url(config: &NodeConfig) -> String {
    let listen = config.listen.trim();
    let local = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    };
    format!("{}://{local}/status", crate::tls::scheme(config))
}

/// Ask the running node; `Ok(None)` when nothing listens there (no node is
/// running), an error when something answers but not with a status.
pub fn ask_running(config: &NodeConfig, token: Option<&str>) -> Result<Option<Value>, String> {
    let url = status_url(config);
    crate::tls::configure_clients(config).map_err(|e| e.to_string())?;
    let agent = modelgate_http::agent(modelgate_http::Timeouts::STATUS);
    let mut req = agent.get(&url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(ureq::Error::ConnectionFailed) => return Ok(None),
        Err(e) => return Err(format!("{url}: {e}")),
    };
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    match status {
        200 => serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| format!("{url}: not a node's status: {e}")),
        401 | 403 => Err(format!(
            "{url} needs a monitor caller's token (status_access = \"token\"): pass --token"
        )),
        404 => Err(format!(
            "{url}: the running node serves no /status (status_access = \"off\"); its metrics or logs say where it stands"
        )),
        s => Err(format!("{url} answered {s}: {body}")),
    }
}

/// Whether a running node's status says it serves: a verified view and
/// every model Serving.
pub fn all_serving(status: &Value) -> bool {
    status["governance"].is_object()
        && status["models"]
            .as_object()
            .is_some_and(|m| m.values().all(|v| v["state"] == "Serving"))
}

/// The status worked out from the data directory, as a starting node would
/// (one sync, every model through its lifecycle, split-view evidence on
/// disk containing every model): the report, and why it is not all
/// Serving, if it is not.
pub fn from_data_dir(config: &std::path::Path) -> Result<(Value, Option<String>), crate::Error> {
    use crate::runtime::{why, ModelStatus, Why};
    use modelgate_governance::{Check, ContainmentReason};
    use serde_json::json;
    let mut node = crate::Node::open(config)?;
    let t = node.now();
    let sync = node.sync(t).cloned();
    let view = sync.as_ref().ok();
    let names: Vec<String> = node.c.models.keys().cloned().collect();
    // The running node's rule: split-view evidence on disk contains every model.
    let split_view = crate::peers::evidence_containment(&node.c.data_dir);
    let mut models = Vec::new();
    for name in &names {
        let s = match (&split_view, node.lifecycle(name, view, t)) {
            (Some(d), _) => {
                let reason = ContainmentReason::CoordinationInconsistent;
                ModelStatus::Contained(Why::new(reason, Check::of_reason(reason), d.clone()))
            }
            (None, Ok(s)) => ModelStatus::Serving {
                digest: s.digest,
                basis: s.basis,
            },
            (None, Err(c)) => ModelStatus::Contained(why(&c)),
        };
        let mut v = s.json();
        v["model"] = json!(name);
        models.push(v);
    }
    let contained = models.iter().filter(|m| m["state"] != "Serving").count();
    let total = models.len();
    let failed = match (&sync, contained) {
        (Ok(_), 0) => None,
        (Err(e), _) => Some(format!(
            "the sync failed ({:?}); {contained} of {total} models contained",
            e.reason
        )),
        (Ok(_), n) => Some(format!("{n} of {total} models contained")),
    };
    let report = json!({
        "source": "data-dir",
        "node": node.c.node,
        "sync": match &sync {
            Ok(v) => json!({"ok": true, "size": v.checkpoint.size, "staleness_seconds": t.saturating_sub(v.authority_time)}),
            Err(e) => json!({"ok": false, "reason": e.reason, "check": Check::of_reason(e.reason), "detail": e.detail}),
        },
        "models": models,
    });
    Ok((report, failed))
}

/// A running node's `/status` in words, a line each: where it was asked,
/// its governance view, each model.
pub fn describe_running(status: &Value, url: &str) -> Vec<String> {
    let mut out = vec![format!("from the running node at {url}")];
    if status["listener"]["plaintext_off_loopback"] == true {
        out.push("WARNING: the gateway serves plain HTTP off loopback (allow_plaintext = true)".into());
    }
    out.push(match status["governance"].as_object() {
        Some(g) => format!("sync: size {} ({} s old)", g["size"], g["staleness_seconds"]),
        None => "sync: CONTAINED: the node holds no verified governance view".into(),
    });
    for (name, m) in status["models"].as_object().into_iter().flatten() {
        out.push(describe_model(name, m));
    }
    out
}

/// [`from_data_dir`]'s report in words, a line each.
pub fn describe_data_dir(report: &Value) -> Vec<String> {
    let sync = &report["sync"];
    let mut out = vec![if sync["ok"] == true {
        format!("sync: size {} ({} s old)", sync["size"], sync["staleness_seconds"])
    } else {
        format!(
            "sync: CONTAINED {}: {}",
            sync["reason"].as_str().unwrap_or("?"),
            sync["detail"].as_str().unwrap_or("")
        )
    }];
    for m in report["models"].as_array().into_iter().flatten() {
        out.push(describe_model(m["model"].as_str().unwrap_or("?"), m));
    }
    out
}

/// One model's state: serving under what, or contained by which check at which step.
fn describe_model(name: &str, m: &Value) -> String {
    let s = |k: &str| m[k].as_str().unwrap_or("?").to_owned();
    match m["state"].as_str() {
        Some("Serving") => format!(
            "{name}: Serving {} under {} (all ten lifecycle steps)",
            s("digest"),
            s("basis")
        ),
        _ => format!(
            "{name}: Contained {} (check {}) at step {} {}: {}",
            s("reason"),
            s("check"),
            m["lifecycle_step_number"],
            s("lifecycle_step"),
            m["detail"].as_str().unwrap_or("")
        ),
    }
}
