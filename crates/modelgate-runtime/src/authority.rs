//! The node's client of the authority, as a seam.
//!
//! Contract for an [`AuthorityClient`]:
//!
//! - every call returns, within a bounded time, a status and a body (at
//!   most the given limit), or a [`FetchError`]; it never hangs forever;
//! - it talks only to the authority it was configured with: no redirect is
//!   followed;
//! - what it returns is untrusted. The node verifies every byte it acts on
//!   (checkpoint signatures, proofs, its own fold); a client that lies, forks
//!   or stalls makes the node contain, never serve on a lie.

use modelgate_node::{Fetch, FetchError};

/// Reads and writes at the authority.
pub trait AuthorityClient: Send + Sync {
    /// GET `path`: the status and at most `limit` bytes of body, whatever the status.
    fn get(&self, path: &str, limit: u64) -> Result<(u16, Vec<u8>), FetchError>;

    /// POST `body` to `path` as `content_type`: the status and the body.
    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>), FetchError>;

    /// The URL `path` names, for messages.
    fn url(&self, path: &str) -> String;
}

/// Largest answer the sync reads (a page of entries or a state summary).
pub const SYNC_BYTES_MAX: u64 = 64 << 20;

/// The sync's view of a client: a 200 answer's body, anything else an error.
pub struct Reads<'a>(pub &'a dyn AuthorityClient);

impl Fetch for Reads<'_> {
    fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        match self.0.get(path, SYNC_BYTES_MAX)? {
            (200, body) => Ok(body),
            (status, _) => Err(FetchError::Status {
                url: self.0.url(path),
                status,
            }),
        }
    }
}

/// HTTP to the authority (ureq): 10 s per request, no redirects.
pub struct HttpAuthority {
    base: String,
    agent: ureq::Agent,
}

impl HttpAuthority {
    /// A client of the authority at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        // The configured authority answers, or the sync fails: a redirect
        // elsewhere is never followed.
        let agent = modelgate_http::agent(modelgate_http::Timeouts::AUTHORITY);
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    fn body(url: &str, mut r: ureq::http::Response<ureq::Body>, limit: u64) -> Result<(u16, Vec<u8>), FetchError> {
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| transport(url, e))?;
        Ok((status, body))
    }
}

fn transport(url: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Transport {
        url: url.to_owned(),
        detail: e.to_string(),
    }
}

impl AuthorityClient for HttpAuthority {
    fn get(&self, path: &str, limit: u64) -> Result<(u16, Vec<u8>), FetchError> {
        let url = self.url(path);
        let r = self.agent.get(&url).call().map_err(|e| transport(&url, e))?;
        Self::body(&url, r, limit)
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>), FetchError> {
        let url = self.url(path);
        let r = self
            .agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| transport(&url, e))?;
        Self::body(&url, r, 1 << 20)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
