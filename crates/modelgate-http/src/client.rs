//! The one way an HTTP client is made: every answer returned whatever its
//! status (the caller decides what a status means), no redirect followed
//! (a server answers for itself or not at all: a redirect could send a
//! request, and its bearer token, anywhere), and every call bounded in time
//! by one of the named [`Timeouts`]. `https://` URLs are verified against
//! the process's roots ([`crate::tls::clients`]); verification cannot be
//! turned off.

use std::time::Duration;

/// How long a client waits to connect, and for a whole call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// For the whole call, connecting and reading the answer included.
    pub call: Duration,
}

impl Timeouts {
    /// A node's calls to its authority (sync, anchors, heartbeats, lineage).
    pub const AUTHORITY: Self = Self::secs(2, 10);
    /// A replica passing a write on to the sequencer.
    pub const SEQUENCER: Self = Self::secs(2, 15);
    /// The authority asking a witness to cosign.
    pub const WITNESS: Self = Self::secs(2, 5);
    /// A node asking a peer for its checkpoint or a consistency proof.
    pub const PEER: Self = Self::secs(2, 5);
    /// `node status` asking the running node.
    pub const STATUS: Self = Self::secs(2, 5);
    /// The CLI's calls to an authority (a submission waits for its fsync).
    pub const CLI: Self = Self::secs(5, 30);
    /// Exporting traces to an OTLP collector.
    pub const TELEMETRY: Self = Self::secs(2, 10);
    /// A governed call in the demonstrations (a small model answers in seconds).
    pub const DEMO_CALL: Self = Self::secs(2, 10);
    /// Asking whether a local server is up yet.
    pub const PROBE: Self = Self::secs(1, 2);

    const fn secs(connect: u64, call: u64) -> Self {
        Self {
            connect: Duration::from_secs(connect),
            call: Duration::from_secs(call),
        }
    }
}

/// A client bounded by `t`, with the process's TLS.
pub fn agent(t: Timeouts) -> ureq::Agent {
    agent_with(t, &crate::tls::clients())
}

/// A client bounded by `t`, verifying and presenting as `tls` says.
pub fn agent_with(t: Timeouts, tls: &crate::tls::ClientTls) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(tls.ureq())
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(t.connect))
        .timeout_global(Some(t.call))
        .build()
        .into()
}
