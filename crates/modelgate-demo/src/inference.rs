//! The live demonstration's inference server: a real llama.cpp server
//! (`llama-cpp-python`'s `llama_cpp.server`) serving a generated GGUF model
//! when that package can be imported, otherwise the demo's built-in scorer.
//!
//! The GGUF file is one of the governed model's files: signed, registered,
//! approved and re-hashed by the nodes like any other. The llama.cpp server
//! is started once, from its own copy of those bytes, and stopped (SIGKILL,
//! then reaped) when the demonstration ends, also on an error.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fail, Failure};

/// Which inference server the live demonstration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Inference {
    /// llama.cpp when `llama-cpp-python` is importable, else the built-in scorer.
    #[default]
    Auto,
    /// The built-in scorer (a fixed answer), whatever is installed.
    Builtin,
    /// llama.cpp, or fail with the reason it cannot run.
    LlamaCpp,
}

/// The Python interpreter asked for `llama_cpp`: `MODELGATE_PYTHON`, else `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("MODELGATE_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// How long the llama.cpp server may take to load the model and answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running inference server.
pub(crate) struct Upstream {
    /// Its base URL.
    pub url: String,
    /// One line for a person: what is answering the calls.
    pub what: String,
    /// The model's weights file: (name, bytes), beside its `config.json`.
    pub weights: (String, Vec<u8>),
    child: Option<Child>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The built-in scorer's weights: 64 KiB of a fixed pattern.
fn builtin_weights() -> (String, Vec<u8>) {
    (
        "weights.bin".to_owned(),
        (0..(1u32 << 16)).map(|i| (i as u64 * 31) as u8).collect(),
    )
}

/// Whether `python` can import llama.cpp's server; its version if so, else
/// what went wrong (for the line that says why the scorer answers instead).
pub fn llama_cpp_version(python: &Path) -> Result<String, String> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{} could not be run: {e}", python.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return if status.success() {
                    Ok(out.trim().to_owned())
                } else {
                    let last = err.lines().last().unwrap_or("").trim().to_owned();
                    Err(format!("{} cannot import llama_cpp.server ({last})", python.display()))
                };
            }
            Ok(None) if started.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not import llama_cpp within 30 s", python.display()));
            }
        }
    }
}

/// Start the inference server `which` asks for; `dir` holds its files and log.
pub(crate) fn start(which: Inference, dir: &Path, rt: &tokio::runtime::Runtime) -> Result<Upstream, Failure> {
    let py = python();
    let found = match which {
        Inference::Builtin => Err("the built-in scorer was asked for".to_owned()),
        Inference::Auto | Inference::LlamaCpp => llama_cpp_version(&py),
    };
    match found {
        Ok(version) => start_llama(&py, &version, dir),
        Err(why) if which == Inference::LlamaCpp => Err(Failure::Setup(format!("--inference llama-cpp: {why}"))),
        Err(why) => Ok(Upstream {
            url: crate::governance::spawn_scorer(rt)?,
            what: format!("the built-in scorer (a fixed answer): {why}"),
            weights: builtin_weights(),
            child: None,
        }),
    }
}

fn start_llama(py: &Path, version: &str, dir: &Path) -> Result<Upstream, Failure> {
    let gguf = crate::gguf::tiny_llama();
    fs::create_dir_all(dir).map_err(fail)?;
    let model = dir.join("model.gguf");
    fs::write(&model, &gguf).map_err(fail)?;
    // A free port: bound, read and released; the server binds it at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(fail)?
        .port();
    let log_path = dir.join("llama-server.log");
    let log = fs::File::create(&log_path).map_err(fail)?;
    let child = Command::new(py)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--model_alias",
            crate::live::MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--n_ctx",
            "512",
            "--n_threads",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(fail)?)
        .stderr(log)
        .spawn()
        .map_err(|e| Failure::Setup(format!("couldn't start {} -m llama_cpp.server: {e}", py.display())))?;
    let mut up = Upstream {
        url: format!("http://127.0.0.1:{port}"),
        what: format!(
            "llama.cpp (llama-cpp-python {version}) serving a generated {} KiB GGUF model",
            gguf.len() >> 10
        ),
        weights: ("model.gguf".to_owned(), gguf),
        child: Some(child),
    };
    let agent = modelgate_http::agent(modelgate_http::Timeouts::PROBE);
    let started = Instant::now();
    loop {
        if agent
            .get(&format!("{}/v1/models", up.url))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(up);
        }
        let exited = up.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if exited.is_some() || started.elapsed() > START_TIMEOUT {
            let tail: String = fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            let how = exited.map_or_else(
                || format!("did not answer within {} s", START_TIMEOUT.as_secs()),
                |s| format!("exited ({s})"),
            );
            return Err(Failure::Setup(format!(
                "the llama.cpp server {how}; its log ends:\n{tail}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
