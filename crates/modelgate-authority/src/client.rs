//! The command line's client of an authority's API: one named authority
//! (no redirect is followed), bounded in time ([`Timeouts::CLI`]), every
//! answer read as the status and what it says.

use modelgate_http::Timeouts;
use serde_json::Value;

/// Why a call did not get an answer, or got one that is not a success.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The authority could not be reached or its answer not read.
    #[error("{0}")]
    Unreachable(String),
    /// It answered with an error: its status, code and message.
    #[error("refused (HTTP {status}, {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error's code.
        code: String,
        /// What it said.
        message: String,
    },
}

impl ClientError {
    /// A refusal that is a decision about what was sent (a 4xx other than
    /// a missing token or a body too large): not a failure to decide.
    pub fn is_decision(&self) -> bool {
        matches!(self, ClientError::Refused { status, .. } if (400..500).contains(status) && *status != 401 && *status != 413)
    }
}

/// An authority at `base`, with the write token, if any.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the authority at `base` (`http://host:port`).
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            agent: modelgate_http::agent(Timeouts::CLI),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`: the body on 200.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let u = self.url(path);
        let mut resp = self
            .agent
            .get(&u)
            .call()
            .map_err(|e| ClientError::Unreachable(format!("couldn't reach {u}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| ClientError::Unreachable(format!("reading {u}: {e}")))?;
        if status != 200 {
            return Err(refusal(
                status,
                &serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
            ));
        }
        Ok(body)
    }

    /// POST `entry` as JSON to `path` with the token: the status and the
    /// JSON answer of a success (2xx), else the refusal.
    pub fn post(&self, path: &str, entry: &[u8]) -> Result<(u16, Value), ClientError> {
        let u = self.url(path);
        let mut req = self.agent.post(&u).header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .send(entry)
            .map_err(|e| ClientError::Unreachable(format!("couldn't reach {u}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        if (200..300).contains(&status) {
            Ok((status, v))
        } else {
            Err(refusal(status, &v))
        }
    }
}

fn refusal(status: u16, v: &Value) -> ClientError {
    ClientError::Refused {
        status,
        code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
        message: v["error"]["message"]
            .as_str()
            .or(v.as_str())
            .unwrap_or("")
            .trim()
            .to_owned(),
    }
}

/// The authority's answer to a pending approval, in words: who signed and
/// how many more must (202), or the index it went into the log at.
pub fn describe_pending(status: u16, v: &Value) -> String {
    let names = |v: &Value| -> String {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    if status != 202 {
        return format!("threshold met: accepted at index {}", v["index"]);
    }
    let p = &v["pending"];
    format!(
        "pending {}: signed by {}; {} more approver(s) needed (may sign: {})",
        p["id"].as_str().unwrap_or("?"),
        names(&p["signed_by"]),
        p["needed"],
        names(&p["may_sign"]),
    )
}
