//! Helpers shared by the CLI test files: run the real binary, read its output.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Run `modelgate ARGS…` and capture everything.
pub fn mg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .unwrap()
}

/// A temporary path as `&str` (they are always UTF-8 here).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Standard output, lossily decoded.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run `modelgate` with the arguments of one line split at spaces (for
/// test paths, which never hold spaces).
pub fn mg_line(line: &str) -> Output {
    mg(&line.split(' ').collect::<Vec<_>>())
}
