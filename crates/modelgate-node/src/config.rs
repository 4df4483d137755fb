//! The node's configuration: one TOML file, every field overridable by an
//! environment variable, unknown fields refused.
//!
//! ```toml
//! node = "node-1"                         # MODELGATE_NODE_NODE: this node's id in the governance log
//! authority = "http://127.0.0.1:7370"     # MODELGATE_NODE_AUTHORITY: the authority's base URL
//! trust_root = "trust-root.dsse.json"     # MODELGATE_NODE_TRUST_ROOT: the pinned trust root (entry 0)
//! key = "node.skey"                       # MODELGATE_NODE_KEY: the node's note key (PRIVATE+KEY…)
//! scopes = ["prod/credit/scoring"]        # MODELGATE_NODE_SCOPES (comma-separated): scopes served
//! max_staleness_seconds = 30              # MODELGATE_NODE_MAX_STALENESS_SECONDS
//! data_dir = "/var/lib/modelgate-node"    # MODELGATE_NODE_DATA_DIR: persisted checkpoint, lineage log
//!
//! [models.credit]                         # one table per served model
//! dir = "/models/credit"                  # the model directory (or file)
//! bundle = "/models/credit/model.sig"     # its OMS signature
//! ```
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
    /// Oldest authority timestamp accepted, in seconds.
    pub max_staleness_seconds: u64,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// Served models by name.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
}

const PREFIX: &str = "MODELGATE_NODE_";

impl NodeConfig {
    /// Read and validate a configuration file, then apply environment
    /// overrides from `env` (pass `std::env::vars()`).
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
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
                other => return Err(format!("unknown override {PREFIX}{other} (fields: NODE, AUTHORITY, TRUST_ROOT, KEY, SCOPES, MAX_STALENESS_SECONDS, DATA_DIR)")),
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut c.trust_root);
        resolve(&mut c.key);
        resolve(&mut c.data_dir);
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
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let p = write(d.path(), GOOD);
        let e = NodeConfig::load(&p, [("MODELGATE_NODE_COLOUR".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(e.contains("unknown override"), "{e}");
        let e = NodeConfig::load(
            &p,
            [("MODELGATE_NODE_MAX_STALENESS_SECONDS".to_owned(), "soon".to_owned())],
        )
        .unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }
}
