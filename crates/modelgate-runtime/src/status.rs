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
    format!("http://{local}/status")
}

/// Ask the running node; `Ok(None)` when nothing listens there (no node is
/// running), an error when something answers but not with a status.
pub fn ask_running(config: &NodeConfig, token: Option<&str>) -> Result<Option<Value>, String> {
    let url = status_url(config);
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
