//! `modelgate exec`: run an inference server only while its model is
//! proven (see `modelgate_runtime::exec`); exit 3 with the reason when it
//! is contained, the server's own code when it exits by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use modelgate_runtime::exec::{supervise, Ended, Supervised};
use modelgate_runtime::Runtime;

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

pub fn run(a: ExecArgs) -> Result<(), Failure> {
    crate::init_logging();
    let rt = Runtime::open(&a.config, Duration::from_millis(a.interval_ms.max(10)))?;
    let shared = rt.shared();
    if !shared.config.models.contains_key(&a.model) {
        return Err(Failure::Usage(format!(
            "model {:?} is not in the configuration (it has: {})",
            a.model,
            shared.config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    modelgate_runtime::runtime::stop_on_signals(&shared);
    let looper = rt.spawn(|e| eprintln!("{}", e.json()))?;
    let job = Supervised {
        model: a.model.clone(),
        command: a.command,
        grace: Duration::from_secs(a.grace_seconds),
    };
    let ended = supervise(&shared, &job, &looper, |pid, digest| {
        eprintln!(
            "{}",
            serde_json::json!({"model": a.model, "state": "Started", "pid": pid, "digest": digest})
        );
    })?;
    match ended {
        Ended::Contained { reason, check, detail } => {
            Err(Failure::Contained(format!("{reason:?} ({check}): {detail}")))
        }
        Ended::Exited(status) if status.success() => Ok(()),
        Ended::Exited(status) => {
            let code = status.code().map_or(1, |c| c.clamp(0, 255) as u8);
            Err(Failure::Child(code.max(1), format!("the server exited: {status}")))
        }
        Ended::Stopped { how } => {
            eprintln!(
                "modelgate: stopping{}",
                how.map(|h| format!(": {h}")).unwrap_or_default()
            );
            Ok(())
        }
    }
}
