//! The policy guide and its examples stay true: every example set validates,
//! a schema error lists what is valid, and every attribute the schema
//! declares is in the guide and in the error's summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use modelgate_governance::policy::{compile, SCHEMA, SCHEMA_SUMMARY};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_example_policy_set_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(repo().join("examples/policies")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "cedar") {
            let text = std::fs::read_to_string(&path).unwrap();
            compile(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "only {n} example policy sets");
}

#[test]
fn a_schema_error_lists_the_valid_attributes() {
    let e = compile("@id(\"x\") permit(principal, action, resource) when { resource.owner == \"me\" };")
        .unwrap_err()
        .to_string();
    assert!(e.contains("owner"), "{e}");
    for want in [
        "name, version and risk_tier",
        "scope",
        "via_exception",
        "Action::\"infer\"",
    ] {
        assert!(e.contains(want), "{want} missing from: {e}");
    }
}

#[test]
fn every_schema_attribute_is_in_the_guide_and_the_summary() {
    let guide = std::fs::read_to_string(repo().join("docs/policies.md")).unwrap();
    let attrs: Vec<&str> = SCHEMA.split('"').skip(1).step_by(2).filter(|a| *a != "infer").collect();
    assert!(attrs.len() >= 6, "{attrs:?}");
    for a in attrs {
        assert!(SCHEMA_SUMMARY.contains(a), "{a} is not in SCHEMA_SUMMARY");
        assert!(guide.contains(a), "{a} is not in docs/policies.md");
    }
}
