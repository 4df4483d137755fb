//! A hashing progress line on stderr, drawn only when stderr is a terminal so that
//! scripts and logs never receive carriage-return noise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::HashProgress;

/// How often the line is redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

/// Shares a hashing run's progress; draws it while alive if stderr is a terminal.
pub struct Progress {
    /// The counters the hashing run advances.
    pub bytes: Arc<HashProgress>,
    done: Arc<AtomicBool>,
    drawer: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a progress line labelled `what`; it appears once the run knows
    /// its total (after listing the tree, which it does once).
    pub fn start(what: &'static str) -> Self {
        let bytes = Arc::new(HashProgress::default());
        let done = Arc::new(AtomicBool::new(false));
        let drawer = std::io::stderr().is_terminal().then(|| {
            let (bytes, done) = (bytes.clone(), done.clone());
            std::thread::spawn(move || draw(what, &bytes, &done))
        });
        Progress { bytes, done, drawer }
    }

    /// The progress to hand to the hasher.
    pub fn counter(&self) -> &HashProgress {
        &self.bytes
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.drawer.take() {
            let _ = h.join();
        }
    }
}

fn draw(what: &str, progress: &HashProgress, done: &AtomicBool) {
    let start = Instant::now();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut err = std::io::stderr();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(REDRAW_INTERVAL);
        let total = progress.total.load(Ordering::Relaxed);
        if total == 0 {
            continue;
        }
        let n = progress.done.load(Ordering::Relaxed).min(total);
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let _ = write!(
            err,
            "\r{what} {:.2}/{:.2} GiB ({:>3.0}%) {:.2} GiB/s ",
            gib(n),
            gib(total),
            100.0 * n as f64 / total as f64,
            gib(n) / secs
        );
        let _ = err.flush();
    }
    let _ = write!(err, "\r{:60}\r", "");
}
