//! Helpers shared by the CLI test files: run the real binary, read its output.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

pub mod world;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Run `modelgate ARGS…` and capture everything.
pub fn mg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .unwrap()
}

/// The tool `scripts/test.sh` installs and names in the environment
/// variable `var` (a reference venv's python, say): under scripts/test.sh
/// or CI a missing one fails the test, naming what installs it (`installs`);
/// in a bare local `cargo test` the test says it skipped (on stderr).
pub fn installed_tool(var: &str, installs: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None if std::env::var_os("MODELGATE_REQUIRE_INTEROP").is_some() || std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run scripts/test.sh, which installs {installs}")
        }
        None => {
            eprintln!("SKIPPED: this test needs {var} (scripts/test.sh sets it)");
            None
        }
    }
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

/// A running `modelgate authority serve`, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start an authority on `data` (initialised on first run) on a free
/// loopback port, and wait for the URL it prints.
pub fn serve(data: &Path) -> Server {
    spawn_server(&[
        "authority",
        "serve",
        "--data",
        s(data),
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "test.example/governance",
    ])
}

/// `modelgate dev serve` on `dev` (a development authority with every
/// role's key), on a loopback port.
pub fn dev_serve(dev: &Path) -> Server {
    spawn_server(&["dev", "serve", "--data", s(dev), "--listen", "127.0.0.1:0"])
}

/// `modelgate dev govern MODEL` against the development authority in `dev`:
/// the model signed, registered and approved as `name` in front of
/// `upstream`, the node listening on `listen`. Returns the node's
/// configuration file and its caller's bearer token.
pub fn dev_govern(dev: &Path, model: &Path, upstream: &str, name: &str, listen: &str) -> (std::path::PathBuf, String) {
    let config: std::path::PathBuf = ok(&mg(&[
        "dev",
        "govern",
        s(model),
        "--data",
        s(dev),
        "--upstream",
        upstream,
        "--name",
        name,
        "--listen",
        listen,
    ]))
    .trim()
    .into();
    let token = std::fs::read_to_string(config.parent().unwrap().join("caller.token"))
        .unwrap()
        .trim()
        .to_owned();
    (config, token)
}

/// The browser tests' tools: `tests/browser` (its npm packages installed)
/// and Debian's Chromium. Missing ones fail the test, naming what installs them.
pub fn browser_tools() -> (std::path::PathBuf, String) {
    let browser = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists() && browser.join("node_modules/axe-core").exists(),
        "run `npm ci --prefix tests/browser` first (.ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing (Debian package chromium; .ci/run installs it)"
    );
    (browser, chromium)
}

/// Start `modelgate ARGS…` as [`spawn_server`] does, or `None` when it
/// exits without listening.
pub fn try_server(args: &[&str]) -> Option<Server> {
    start_server(args).ok()
}

/// Start `modelgate ARGS…`, a server that prints `listening on URL` first,
/// or what it wrote to stderr when it exits without listening. Its stderr
/// is drained (the last lines kept) so that a chatty server never blocks.
pub fn start_server(args: &[&str]) -> Result<Server, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let drained = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in err.lines().map_while(Result::ok) {
            tail.push_back(line);
            if tail.len() > 20 {
                tail.pop_front();
            }
        }
        Vec::from(tail).join("\n")
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Ok(Server {
            url: url.to_owned(),
            child,
        }),
        None => {
            let _ = child.wait();
            Err(drained.join().unwrap_or_default())
        }
    }
}

/// Start `modelgate ARGS…`, a server that announces itself with a JSON
/// line `{"listening": URL}` first (`witness serve`).
pub fn spawn_json_server(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("`modelgate {}` said {line:?}", args.join(" ")));
    Server {
        url: v["listening"].as_str().unwrap().to_owned(),
        child,
    }
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Start `modelgate ARGS…`, a server that prints `listening on URL` first.
pub fn spawn_server(args: &[&str]) -> Server {
    start_server(args).unwrap_or_else(|e| panic!("`modelgate {}` exited without listening:\n{e}", args.join(" ")))
}

/// Standard output of a command that must have succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
    stdout(o)
}

/// The standard output of a command that must exit with `code`.
pub fn exits(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    stdout(o)
}
