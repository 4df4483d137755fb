//! Supervision behind `modelgate exec`: run an inference server only while
//! its model is proven. The server starts as a child once the model is
//! Serving, and is stopped (SIGTERM, then SIGKILL after a grace period) the
//! moment the model is contained or the loop's snapshot ages past the
//! staleness bound. An orchestrator restarting `exec` restarts the whole
//! lifecycle: recovery never skips a step.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate_governance::Check;
use modelgate_node::ContainmentReason;

use crate::runtime::{ModelStatus, Shared};
use crate::Error;

/// What to run, and how to stop it.
pub struct Supervised {
    /// The configured model the server serves.
    pub model: String,
    /// The server command and its arguments.
    pub command: Vec<String>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How supervision ended.
#[derive(Debug)]
pub enum Ended {
    /// The model was contained; the server (if it had started) was stopped.
    Contained {
        /// Why.
        reason: ContainmentReason,
        /// The check that failed.
        check: Check,
        /// What failed, and how the server stopped.
        detail: String,
    },
    /// The server exited by itself with this status.
    Exited(std::process::ExitStatus),
    /// The node loop stopped (SIGTERM or SIGINT); the server was stopped.
    Stopped {
        /// How the server stopped, if it had started.
        how: Option<String>,
    },
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

/// Watch the loop's snapshot every 20 ms (its age too: that must not wait
/// for a loop stalled on a hung authority), start the server once the model
/// is Serving (`on_start` gets its pid and the digest), and stop it the
/// moment the model is not proven any more. A file change is left to the
/// loop's re-verification (inotify wakes it at once): stopping the server
/// is final, and a touched but unchanged file must not cost a restart.
pub fn supervise(
    shared: &Arc<Shared>,
    s: &Supervised,
    looper: &std::thread::JoinHandle<()>,
    mut on_start: impl FnMut(u32, &str),
) -> Result<Ended, Error> {
    let Some(model) = shared.config.models.get(&s.model).cloned() else {
        return Err(Error::Config(format!(
            "model {:?} is not in the configuration (it has: {})",
            s.model,
            shared.config.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let Some((program, args)) = s.command.split_first() else {
        return Err(Error::Config("no server command to run".into()));
    };
    let mut child: Option<Child> = None;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let snap = shared.snapshot();
        let stale = snap.stale(shared.config.max_staleness_seconds, shared.clock.now());
        let failed = match (snap.models.get(&s.model), stale) {
            (Some(ModelStatus::Serving { .. }), Some(why)) => Some((
                ContainmentReason::SyncInterrupted,
                Check::GovernancePolicySynchronization,
                why,
            )),
            (Some(ModelStatus::Contained(w)), _) => Some((w.reason, w.check, w.detail.clone())),
            _ => None,
        };
        if let Some((reason, check, detail)) = failed {
            let how = child.as_mut().map(|c| stop(c, s.grace));
            return Ok(Ended::Contained {
                reason,
                check,
                detail: format!("{detail}{}", how.map(|h| format!("; {h}")).unwrap_or_default()),
            });
        }
        if let (Some(ModelStatus::Serving { digest, .. }), None) = (snap.models.get(&s.model), &child) {
            let c = Command::new(program)
                .args(args)
                .env("MODELGATE_MODEL_DIGEST", digest)
                .env("MODELGATE_MODEL_DIR", &model.dir)
                .spawn()
                .map_err(|e| Error::Start(format!("{program}: {e}")))?;
            on_start(c.id(), digest);
            child = Some(c);
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Ok(Ended::Exited(status));
            }
        }
        if looper.is_finished() {
            let how = child.as_mut().map(|c| stop(c, s.grace));
            return Ok(Ended::Stopped { how });
        }
    }
}
