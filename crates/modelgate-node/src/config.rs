//! The node's configuration: one TOML file, every field overridable by an
//! environment variable, unknown fields refused.
//!
//! ```toml
//! node = "node-1"                         # MODELGATE_NODE_NODE: this node's id in the governance log
//! authority = "http://127.0.0.1:7370"     # MODELGATE_NODE_AUTHORITY: the authority's base URL
//! trust_root = "trust-root.dsse.json"     # MODELGATE_NODE_TRUST_ROOT: the pinned trust root (entry 0)
//! key = "node.skey"                       # MODELGATE_NODE_KEY: the node's note key (PRIVATE+KEY…), or a pkcs11: URI (docs/keys.md)
//! pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"  # MODELGATE_NODE_PKCS11_MODULE: for a pkcs11: key naming no module-path
//! scopes = ["prod/credit/scoring"]        # MODELGATE_NODE_SCOPES (comma-separated): scopes served
//! max_staleness_seconds = 30              # MODELGATE_NODE_MAX_STALENESS_SECONDS: may only tighten the trust root's signed bound
//! data_dir = "/var/lib/modelgate-node"    # MODELGATE_NODE_DATA_DIR: persisted checkpoint, lineage log
//!
//! anchor_interval_seconds = 5            # MODELGATE_NODE_ANCHOR_INTERVAL_SECONDS: how often lineage is anchored
//! heartbeat_interval_seconds = 10         # MODELGATE_NODE_HEARTBEAT_INTERVAL_SECONDS
//! lineage_replication_interval_seconds = 2  # MODELGATE_NODE_LINEAGE_REPLICATION_INTERVAL_SECONDS: ship lineage to the authority (0: never)
//! peers = ["http://10.0.0.2:7380"]        # MODELGATE_NODE_PEERS (comma-separated): other nodes' gateways to compare checkpoints with
//! peer_interval_seconds = 5               # MODELGATE_NODE_PEER_INTERVAL_SECONDS: how often
//!
//! # The gateway (`modelgate node serve`) only:
//! listen = "127.0.0.1:7380"               # MODELGATE_NODE_LISTEN: where callers connect
//! upstream = "http://127.0.0.1:8000"      # MODELGATE_NODE_UPSTREAM: the OpenAI-compatible inference server
//! store_content = false                   # MODELGATE_NODE_STORE_CONTENT: keep prompts/outputs, not just digests
//! otlp_endpoint = "http://127.0.0.1:4318/v1/traces"  # MODELGATE_NODE_OTLP_ENDPOINT: OTLP/HTTP traces (none: not sent)
//! max_in_flight = 1024                    # MODELGATE_NODE_MAX_IN_FLIGHT: calls in progress before 429 overloaded
//! status_access = "open"                  # MODELGATE_NODE_STATUS_ACCESS: /status is open, "token" (a monitor caller) or "off"
//! metrics_access = "open"                 # MODELGATE_NODE_METRICS_ACCESS: /metrics likewise
//!
//! # TLS (see docs/production.md, "TLS and mutual TLS"):
//! tls_cert = "node-1.pem"                 # MODELGATE_NODE_TLS_CERT: the gateway's PEM chain; with tls_key it speaks TLS only
//! tls_key = "node-1.key"                  # MODELGATE_NODE_TLS_KEY: its key (PKCS#8, SEC1 or RSA)
//! tls_client_ca = "ca.pem"                # MODELGATE_NODE_TLS_CLIENT_CA: callers and peers must present a certificate of this CA
//! allow_plaintext = false                 # MODELGATE_NODE_ALLOW_PLAINTEXT: plain HTTP off loopback (refused otherwise)
//! ca_file = "ca.pem"                      # MODELGATE_NODE_CA_FILE: verify https:// authority, peers and upstream against it (default: system roots)
//! client_cert = "node-1-client.pem"       # MODELGATE_NODE_CLIENT_CERT: presented to the authority, peers and upstream when they ask
//! client_key = "node-1-client.key"        # MODELGATE_NODE_CLIENT_KEY
//!
//! [models.credit]                         # one table per served model
//! dir = "/models/credit"                  # the model directory (or file)
//! bundle = "/models/credit/model.sig"     # its OMS signature
//!
//! [callers.scoring-service]               # one table per caller; the table name is its principal
//! token_sha256 = "9f86d0…"                # hex SHA-256 of its bearer token (the token itself is never stored)
//! certificate = "spiffe://example.org/scoring"  # or/and: a name its mutual-TLS certificate carries (a SAN URI, or a DNS name)
//! groups = ["credit-team"]                # Cedar groups of the principal
//! scopes = ["prod/credit/scoring"]        # scopes it may call in; the first is the default ([] for none)
//! lineage = "own"                         # lineage records it may read: "own" calls, "all" (an auditor) or "none"
//! monitor = false                         # may read /status and /metrics when they are set to "token"
//! attributes = { department = "risk" }    # Cedar tags of the principal: principal.getTag("department")
//! ```
//!
//! `/healthz` and `/readyz` are always open (they say only "ok" or "ready").
//!
//! Relative paths are resolved against the configuration file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One served model.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model directory (or single file).
    pub dir: PathBuf,
    /// Its OMS bundle.
    pub bundle: PathBuf,
}

/// A caller of the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Hex SHA-256 of its bearer token. With `certificate` as well, a call
    /// needs both; with neither, the caller cannot call.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// A subject alternative name of its client certificate (a URI such as
    /// `spiffe://…`, else a DNS name): over mutual TLS, a certificate that
    /// names it identifies the caller.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Its Cedar groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Scopes it may call in (the first is the default; none for a caller
    /// that only reads, such as an auditor).
    pub scopes: Vec<String>,
    /// Which lineage records (`/lineage/{id}`) it may read.
    #[serde(default)]
    pub lineage: LineageAccess,
    /// May read `/status` and `/metrics` when they are `"token"`.
    #[serde(default)]
    pub monitor: bool,
    /// Attributes of the principal, given to Cedar as its string tags
    /// (`principal.getTag("department")`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Which lineage records a caller may read. A record names the caller,
/// scope, model and time of a call: counting ids must not list them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineageAccess {
    /// Records of its own calls (a request, its completion, its denial).
    #[default]
    Own,
    /// Every record, the node's lifecycle records included (an auditor).
    All,
    /// None.
    None,
}

/// Who may read an operational endpoint (`/status`, `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointAccess {
    /// Anyone who reaches the listener.
    #[default]
    Open,
    /// A caller whose table says `monitor = true`.
    Token,
    /// Nobody: the route answers 404.
    Off,
}

impl EndpointAccess {
    fn parse(k: &str, v: &str) -> Result<Self, String> {
        match v {
            "open" => Ok(Self::Open),
            "token" => Ok(Self::Token),
            "off" => Ok(Self::Off),
            _ => Err(format!("{k}={v:?} must be open, token or off")),
        }
    }
}

fn default_anchor_interval() -> u64 {
    5
}

fn default_heartbeat_interval() -> u64 {
    10
}

fn default_replication_interval() -> u64 {
    2
}

fn default_peer_interval() -> u64 {
    5
}

fn default_rehash_interval() -> u64 {
    86_400
}

fn default_rehash_rate() -> u64 {
    256
}

fn default_max_in_flight() -> usize {
    1024
}

fn default_listen() -> String {
    "127.0.0.1:7380".into()
}

/// The node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id.
    pub node: String,
    /// The authority's base URL.
    pub authority: String,
    /// The pinned trust root file.
    pub trust_root: PathBuf,
    /// The node's note key file.
    pub key: PathBuf,
    /// Scopes this node serves.
    pub scopes: Vec<String>,
    /// Oldest authority timestamp accepted, in seconds. The trust root's
    /// signed `freshness.max_staleness_seconds` applies when it is lower: a
    /// node may only tighten it.
    pub max_staleness_seconds: u64,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// How often the lineage log is anchored in the governance log.
    #[serde(default = "default_anchor_interval")]
    pub anchor_interval_seconds: u64,
    /// How often a heartbeat goes to the authority.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval_seconds: u64,
    /// How often new lineage records are shipped to the authority (their
    /// metadata and digests, with a signed checkpoint); 0: never.
    #[serde(default = "default_replication_interval")]
    pub lineage_replication_interval_seconds: u64,
    /// Other nodes' gateways (base URLs): this node compares its verified
    /// governance checkpoint with theirs (`/peer/checkpoint`) and contains
    /// every model on a split view.
    #[serde(default)]
    pub peers: Vec<String>,
    /// How often the peers are asked.
    #[serde(default = "default_peer_interval")]
    pub peer_interval_seconds: u64,
    /// How often every model is re-verified in full in the background,
    /// every byte read whatever the verified-digest cache says; the first
    /// run starts once the node has checked its models. 0: never.
    #[serde(default = "default_rehash_interval")]
    pub rehash_interval_seconds: u64,
    /// The background re-verification reads at most this many MiB per
    /// second, so it does not take the disk from inference. 0: no limit.
    #[serde(default = "default_rehash_rate")]
    pub rehash_max_mib_per_second: u64,
    /// Seal each model file with fs-verity before it is verified, where the
    /// kernel and file system can (the file becomes read-only for good, and
    /// the kernel fails any read of a block changed since); where they
    /// cannot, `/status` says why and the verified-digest cache is used.
    #[serde(default)]
    pub fs_verity: bool,
    /// The gateway's listening address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The inference server's base URL (the gateway forwards to it).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Keep request and response bodies in the lineage log (default: digests only).
    #[serde(default)]
    pub store_content: bool,
    /// Where to send OpenTelemetry traces (OTLP/HTTP, the full traces URL).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Calls the gateway handles at once; more are refused (429) at once
    /// instead of queueing without bound.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Who may read `/status`.
    #[serde(default)]
    pub status_access: EndpointAccess,
    /// Who may read `/metrics`.
    #[serde(default)]
    pub metrics_access: EndpointAccess,
    /// Served models by name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Gateway callers by principal name.
    #[serde(default)]
    pub callers: BTreeMap<String, CallerConfig>,
    /// The gateway's TLS certificate chain (PEM); with `tls_key`, TLS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Callers and peers must present a certificate of this CA.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// CA certificates the node's clients verify https:// servers against.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificate the node's clients present (mutual TLS).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The PKCS#11 module for a `key` that is a `pkcs11:` URI naming none.
    #[serde(default)]
    pub pkcs11_module: Option<PathBuf>,
}

impl NodeConfig {
    /// The lineage key's `pkcs11:` URI, when `key` is one rather than a file.
    pub fn key_uri(&self) -> Option<&str> {
        self.key.to_str().filter(|k| k.starts_with("pkcs11:"))
    }
}

const PREFIX: &str = "MODELGATE_NODE_";

fn boolean(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{k}={v:?} must be true or false")),
    }
}

impl NodeConfig {
    /// Read and validate a configuration file, then apply environment
    /// overrides from `env` (pass `std::env::vars()`).
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, crate::NodeError> {
        Self::load_inner(path, env).map_err(crate::NodeError::Config)
    }

    fn load_inner(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
        let mut c: NodeConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (k, v) in env {
            let Some(field) = k.strip_prefix(PREFIX) else { continue };
            match field {
                "NODE" => c.node = v,
                "AUTHORITY" => c.authority = v,
                "TRUST_ROOT" => c.trust_root = v.into(),
                "KEY" => c.key = v.into(),
                "SCOPES" => c.scopes = v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
                "MAX_STALENESS_SECONDS" => {
                    c.max_staleness_seconds = v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "DATA_DIR" => c.data_dir = v.into(),
                "ANCHOR_INTERVAL_SECONDS" => {
                    c.anchor_interval_seconds = v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "HEARTBEAT_INTERVAL_SECONDS" => {
                    c.heartbeat_interval_seconds =
                        v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "LINEAGE_REPLICATION_INTERVAL_SECONDS" => {
                    c.lineage_replication_interval_seconds =
                        v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "PEERS" => c.peers = v.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect(),
                "PEER_INTERVAL_SECONDS" => {
                    c.peer_interval_seconds = v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "REHASH_INTERVAL_SECONDS" => {
                    c.rehash_interval_seconds = v.parse().map_err(|_| format!("{k}={v:?} is not a number of seconds"))?
                }
                "REHASH_MAX_MIB_PER_SECOND" => {
                    c.rehash_max_mib_per_second =
                        v.parse().map_err(|_| format!("{k}={v:?} is not a number of MiB per second"))?
                }
                "FS_VERITY" => c.fs_verity = boolean(&k, &v)?,
                "LISTEN" => c.listen = v,
                "UPSTREAM" => c.upstream = Some(v),
                "OTLP_ENDPOINT" => c.otlp_endpoint = Some(v),
                "MAX_IN_FLIGHT" => {
                    c.max_in_flight = v.parse().map_err(|_| format!("{k}={v:?} is not a number"))?
                }
                "STATUS_ACCESS" => c.status_access = EndpointAccess::parse(&k, &v)?,
                "METRICS_ACCESS" => c.metrics_access = EndpointAccess::parse(&k, &v)?,
                "STORE_CONTENT" => c.store_content = boolean(&k, &v)?,
                "ALLOW_PLAINTEXT" => c.allow_plaintext = boolean(&k, &v)?,
                "TLS_CERT" => c.tls_cert = Some(v.into()),
                "TLS_KEY" => c.tls_key = Some(v.into()),
                "TLS_CLIENT_CA" => c.tls_client_ca = Some(v.into()),
                "CA_FILE" => c.ca_file = Some(v.into()),
                "CLIENT_CERT" => c.client_cert = Some(v.into()),
                "CLIENT_KEY" => c.client_key = Some(v.into()),
                "PKCS11_MODULE" => c.pkcs11_module = Some(v.into()),
                other => return Err(format!("unknown override {PREFIX}{other} (fields: NODE, AUTHORITY, TRUST_ROOT, KEY, SCOPES, MAX_STALENESS_SECONDS, DATA_DIR, ANCHOR_INTERVAL_SECONDS, HEARTBEAT_INTERVAL_SECONDS, LINEAGE_REPLICATION_INTERVAL_SECONDS, PEERS, PEER_INTERVAL_SECONDS, REHASH_INTERVAL_SECONDS, REHASH_MAX_MIB_PER_SECOND, FS_VERITY, LISTEN, UPSTREAM, STORE_CONTENT, OTLP_ENDPOINT, MAX_IN_FLIGHT, STATUS_ACCESS, METRICS_ACCESS, TLS_CERT, TLS_KEY, TLS_CLIENT_CA, ALLOW_PLAINTEXT, CA_FILE, CLIENT_CERT, CLIENT_KEY, PKCS11_MODULE)")),
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut c.trust_root);
        if c.key_uri().is_none() {
            resolve(&mut c.key);
        }
        resolve(&mut c.data_dir);
        for p in [
            &mut c.pkcs11_module,
            &mut c.tls_cert,
            &mut c.tls_key,
            &mut c.tls_client_ca,
            &mut c.ca_file,
            &mut c.client_cert,
            &mut c.client_key,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        for m in c.models.values_mut() {
            resolve(&mut m.dir);
            resolve(&mut m.bundle);
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        if self.node.is_empty()
            || self
                .node
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(format!(
                "node id {:?} must be non-empty, without spaces or '+'",
                self.node
            ));
        }
        if !(self.authority.starts_with("http://") || self.authority.starts_with("https://")) {
            return Err(format!(
                "authority {:?} must be an http:// or https:// URL",
                self.authority
            ));
        }
        if self.scopes.is_empty() {
            return Err("scopes: at least one scope is required".into());
        }
        for s in &self.scopes {
            modelgate_governance::check_scope(s).map_err(|e| format!("scopes: {e}"))?;
        }
        if self.max_staleness_seconds == 0 {
            return Err("max_staleness_seconds must be positive".into());
        }
        for (name, m) in &self.models {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("model name {name:?} must be non-empty without spaces"));
            }
            if !m.dir.exists() {
                return Err(format!("model {name}: {} does not exist", m.dir.display()));
            }
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be positive".into());
        }
        for p in &self.peers {
            if !(p.starts_with("http://") || p.starts_with("https://")) {
                return Err(format!(
                    "peers: {p:?} must be an http:// or https:// URL (a node's gateway)"
                ));
            }
        }
        if !self.peers.is_empty() && self.peer_interval_seconds == 0 {
            return Err("peer_interval_seconds must be positive when peers are given".into());
        }
        if self.anchor_interval_seconds == 0 || self.heartbeat_interval_seconds == 0 {
            return Err("anchor_interval_seconds and heartbeat_interval_seconds must be positive".into());
        }
        if self.store_content && self.lineage_replication_interval_seconds > 0 {
            return Err(
                "store_content = true keeps prompts and outputs in the lineage records, and \
                        lineage_replication_interval_seconds ships those records to the authority; content never \
                        leaves the node, so keeping it needs lineage_replication_interval_seconds = 0"
                    .into(),
            );
        }
        if let Some(u) = &self.otlp_endpoint {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("otlp_endpoint {u:?} must be an http:// or https:// URL"));
            }
        }
        if let Some(u) = &self.upstream {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("upstream {u:?} must be an http:// or https:// URL"));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both, or neither".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS)".into());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("client_cert and client_key go together: give both, or neither".into());
        }
        for (name, c) in &self.callers {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("caller name {name:?} must be non-empty without spaces"));
            }
            if let Some(t) = &c.token_sha256 {
                if t.len() != 64 || hex::decode(t).is_err() {
                    return Err(format!("caller {name}: token_sha256 must be 64 hex digits"));
                }
            }
            match (&c.token_sha256, &c.certificate) {
                (None, None) => {
                    return Err(format!(
                        "caller {name}: give token_sha256 (a bearer token), certificate (a mutual-TLS \
                         certificate's name), or both"
                    ))
                }
                (_, Some(_)) if self.tls_client_ca.is_none() => {
                    return Err(format!(
                        "caller {name}: certificate needs tls_client_ca (the gateway asks for client \
                         certificates only over mutual TLS)"
                    ))
                }
                (None, Some(n)) => {
                    let twin = self.callers.iter().find(|(other, o)| {
                        *other != name && o.token_sha256.is_none() && o.certificate.as_deref() == Some(n)
                    });
                    if let Some((other, _)) = twin {
                        return Err(format!(
                            "callers {name} and {other} are both known by the certificate name {n:?} alone"
                        ));
                    }
                }
                _ => {}
            }
            for s in &c.scopes {
                modelgate_governance::check_scope(s).map_err(|e| format!("caller {name}: scopes: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("node.toml");
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    const GOOD: &str = r#"
node = "node-1"
authority = "http://127.0.0.1:7370"
trust_root = "trust-root.dsse.json"
key = "node.skey"
scopes = ["prod/credit/scoring"]
max_staleness_seconds = 30
data_dir = "data"

[models.credit]
dir = "model"
bundle = "model.sig"
"#;

    #[test]
    #[allow(clippy::unwrap_used, clippy::panic)]
    fn loads_resolves_overrides_and_refuses_what_it_does_not_know() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("model")).unwrap();
        let p = write(d.path(), GOOD);
        let c = NodeConfig::load(&p, []).unwrap();
        assert_eq!(c.models["credit"].dir, d.path().join("model"));
        assert_eq!(c.key, d.path().join("node.skey"));
        let env = [
            ("MODELGATE_NODE_SCOPES".to_owned(), "prod/a, prod/b".to_owned()),
            ("MODELGATE_NODE_MAX_STALENESS_SECONDS".to_owned(), "5".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let c = NodeConfig::load(&p, env).unwrap();
        assert_eq!(
            (c.scopes.clone(), c.max_staleness_seconds),
            (vec!["prod/a".to_owned(), "prod/b".to_owned()], 5)
        );
        for (bad, needle) in [
            (
                GOOD.replace(
                    "max_staleness_seconds = 30",
                    "max_staleness_seconds = 30\ncolour = \"red\"",
                ),
                "unknown field",
            ),
            (GOOD.replace("dir = \"model\"", "dir = \"nowhere\""), "does not exist"),
            (GOOD.replace("prod/credit/scoring", "Prod Credit"), "scopes"),
            (GOOD.replace("http://127.0.0.1:7370", "127.0.0.1:7370"), "URL"),
            (
                GOOD.replace("scopes = [\"prod/credit/scoring\"]", "scopes = []"),
                "at least one scope",
            ),
            (
                GOOD.replace("bundle = \"model.sig\"", "bundle = \"model.sig\"\nextra = 1"),
                "unknown field",
            ),
        ] {
            let p = write(d.path(), &bad);
            let e = NodeConfig::load(&p, []).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
        let p = write(d.path(), GOOD);
        let e = NodeConfig::load(&p, [("MODELGATE_NODE_COLOUR".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(e.to_string().contains("unknown override"), "{e}");
        let e = NodeConfig::load(
            &p,
            [("MODELGATE_NODE_MAX_STALENESS_SECONDS".to_owned(), "soon".to_owned())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
