//! `modelgate exec`: run an inference server only while its model is
//! proven. The lifecycle runs first; the server starts as a child once the
//! model is Serving, and is stopped (SIGTERM, then SIGKILL after a grace
//! period) the moment the model is contained, after which `exec` exits 3
//! with the reason. An orchestrator restarting `exec` restarts the whole
//! lifecycle: recovery never skips a step.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Args;

use crate::runtime::{ModelStatus, Runtime};
use crate::Failure;

#[derive(Args)]
pub struct ExecArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// The configured model the server serves.
    #[arg(long, value_name = "NAME")]
    model: String,
    /// Seconds between SIGTERM and SIGKILL when stopping the server.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    grace_seconds: u64,
    /// How often to sync and re-check, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval_ms: u64,
    /// The server command and its arguments (after `--`). It gets
    /// MODELGATE_MODEL_DIGEST and MODELGATE_MODEL_DIR in its environment.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
fn stop(child: &mut Child, grace: Duration) -> String {
    let pid = rustix::process::Pid::from_raw(child.id() as i32);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(s)) => return format!("the server stopped on SIGTERM ({s})"),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let s = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    format!(
        "the server ignored SIGTERM for {} s and was killed ({s})",
        grace.as_secs()
    )
}

pub fn run(a: ExecArgs) -> Result<(), Failure> {
    crate::runtime::init_logging();
    let rt = Runtime::open(&a.config, Duration::from_millis(a.interval_ms.max(10)))?;
    let shared = rt.shared();
    let Some(model) = shared.config.models.get(&a.model).cloned() else {
        return Err(Failure::Usage(format!(
            "model {:?} is not in the configuration (it has: {})",
            a.model,
            shared.config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    crate::runtime::stop_on_signals(&shared);
    // The loop runs on its own thread; this one watches its snapshot and also
    // checks its age, which must not wait for the loop (a loop stalled on a
    // hung authority). A file change is left to the loop's re-verification
    // (inotify wakes it at once): stopping the server is final for `exec`,
    // and a touched but unchanged file must not cost a restart.
    let looper = rt.spawn(|e| eprintln!("{}", e.json()))?;
    let grace = Duration::from_secs(a.grace_seconds);
    let mut child: Option<Child> = None;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let snap = shared.snapshot();
        let stale = snap.stale(shared.config.max_staleness_seconds, crate::runtime::now());
        let state = match snap.models.get(&a.model) {
            Some(ModelStatus::Serving { .. }) if stale.is_some() => Some((
                modelgate_node::ContainmentReason::SyncInterrupted,
                stale.unwrap_or_default(),
            )),
            Some(ModelStatus::Contained { reason, detail }) => Some((*reason, detail.clone())),
            _ => None,
        };
        if let Some((reason, detail)) = state {
            let how = child.as_mut().map(|c| stop(c, grace));
            return Err(Failure::Contained(format!(
                "{reason:?}: {detail}{}",
                how.map(|h| format!("; {h}")).unwrap_or_default()
            )));
        }
        if let (Some(ModelStatus::Serving { digest, .. }), None) = (snap.models.get(&a.model), &child) {
            let c = Command::new(&a.command[0])
                .args(&a.command[1..])
                .env("MODELGATE_MODEL_DIGEST", digest)
                .env("MODELGATE_MODEL_DIR", &model.dir)
                .spawn()
                .map_err(|e| Failure::Usage(format!("couldn't start {}: {e}", a.command[0])))?;
            eprintln!(
                "{}",
                serde_json::json!({"model": a.model, "state": "Started", "pid": c.id(), "digest": digest})
            );
            child = Some(c);
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let code = status.code().map_or(1, |c| c.clamp(0, 255) as u8);
                return if status.success() {
                    Ok(())
                } else {
                    Err(Failure::Child(code.max(1), format!("the server exited: {status}")))
                };
            }
        }
        if looper.is_finished() {
            let how = child.as_mut().map(|c| stop(c, grace));
            eprintln!(
                "modelgate: stopping{}",
                how.map(|h| format!(": {h}")).unwrap_or_default()
            );
            return Ok(());
        }
    }
}
