//! What a package ships beside the binary: man pages and shell completions
//! generated from the CLI's definition, and the systemd units under
//! examples/systemd, checked by `systemd-analyze verify` (which .ci/run
//! installs; this test fails, never skips, without it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{mg, ok, s, stderr};

#[test]
fn man_pages_cover_every_subcommand_and_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let o = mg(&["generate", "man", "--out", s(dir.path())]);
    ok(&o);
    let page = |n: &str| std::fs::read_to_string(dir.path().join(format!("{n}.1"))).unwrap();
    assert!(page("modelgate").contains(".TH modelgate 1"));
    for (name, option) in [
        ("modelgate-node-serve", "\\-\\-config"),
        ("modelgate-authority-init", "\\-\\-root\\-threshold"),
        ("modelgate-exception", "\\-\\-expires"),
        ("modelgate-dev-govern", "\\-\\-upstream"),
        ("modelgate-log-verify-proof", "\\-\\-vkey"),
    ] {
        let p = page(name);
        assert!(p.contains(option), "{name}.1 lacks {option}");
        assert!(p.contains(&format!(".TH {name} 1")), "{name}.1 header");
    }
    let n = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(n >= 40, "{n} pages");
    assert!(stderr(&o).contains(&format!("wrote {n} man pages")), "{}", stderr(&o));
}

#[test]
fn completions_are_valid_scripts_naming_the_subcommands() {
    let bash = ok(&mg(&["generate", "completions", "bash"]));
    for sub in ["authority", "exception", "lineage", "dev"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("modelgate.bash");
    std::fs::write(&f, &bash).unwrap();
    let o = Command::new("bash").args(["-n", s(&f)]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(!ok(&mg(&["generate", "completions", shell])).is_empty(), "{shell}");
    }
    let o = mg(&["generate", "completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn the_systemd_units_verify() {
    let units = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/systemd");
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_modelgate");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&units).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        // verify checks that ExecStart is executable: point it at this build.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/modelgate", bin);
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(dir.path().join(name));
    }
    assert_eq!(names.len(), 2, "{names:?}");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&names)
        .output()
        .expect("systemd-analyze is missing (Debian package systemd; .ci/run installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    // An unknown key is only a warning to systemd: any output at all fails.
    assert!(o.status.success() && said.trim().is_empty(), "{said}");
}
