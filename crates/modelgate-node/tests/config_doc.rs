//! docs/node-config.md stays complete: every field of the configuration
//! types (as serde itself lists them) is documented, every top-level field's
//! environment variable is documented and accepted, and examples/node.toml
//! loads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use modelgate_node::config::{CallerConfig, ModelConfig, NodeConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fields serde expects, from its answer to an unknown one.
fn fields<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
    let e = toml::from_str::<T>("zz_not_a_field = 1\n").unwrap_err().to_string();
    let list = e
        .split("expected one of ")
        .nth(1)
        .or_else(|| e.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no field list in {e}"));
    let names: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(!names.is_empty(), "{e}");
    names
}

#[test]
fn every_configuration_field_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/node-config.md")).unwrap();
    let node = fields::<NodeConfig>();
    assert!(node.len() >= 18, "{node:?}");
    for f in node
        .iter()
        .chain(&fields::<ModelConfig>())
        .chain(&fields::<CallerConfig>())
    {
        assert!(
            doc.contains(&format!("| `{f}` |")),
            "field {f} is not in docs/node-config.md"
        );
    }
}

#[test]
fn every_top_level_field_has_a_documented_environment_variable_the_loader_accepts() {
    let doc = std::fs::read_to_string(repo().join("docs/node-config.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "node = \"n\"\nauthority = \"http://127.0.0.1:1\"\ntrust_root = \"t\"\nkey = \"k\"\nscopes = [\"a/b\"]\n\
         max_staleness_seconds = 30\ndata_dir = \"d\"\n",
    )
    .unwrap();
    for f in fields::<NodeConfig>() {
        if f == "models" || f == "callers" {
            continue;
        }
        let var = format!("MODELGATE_NODE_{}", f.to_uppercase());
        assert!(doc.contains(&format!("`{var}`")), "{var} is not in docs/node-config.md");
        // A value of the wrong kind may be refused, but never as unknown.
        if let Err(e) = NodeConfig::load(&config, [(var.clone(), "x".to_owned())]) {
            assert!(!e.to_string().contains("unknown override"), "{var}: {e}");
        }
    }
    let e = NodeConfig::load(&config, [("MODELGATE_NODE_NO_SUCH".to_owned(), "1".to_owned())]).unwrap_err();
    assert!(e.to_string().contains("unknown override"), "{e}");
}

#[test]
fn the_example_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("examples/node.toml"), dir.path().join("node.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("models/credit")).unwrap();
    let c = NodeConfig::load(&dir.path().join("node.toml"), std::iter::empty()).unwrap();
    assert_eq!(c.callers.len(), 3);
    assert_eq!(c.callers["risk-review"].attributes["department"], "risk");
    assert_eq!(c.callers["auditor"].lineage, modelgate_node::config::LineageAccess::All);
    assert_eq!(c.status_access, modelgate_node::config::EndpointAccess::Token);
}
