//! A hashing progress line on stderr, drawn only when stderr is a terminal so that
//! scripts and logs never receive carriage-return noise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

/// Counts bytes hashed; draws them while alive if stderr is a terminal.
pub struct Progress {
    pub bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    drawer: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a progress line for `total` bytes labelled `what`.
    pub fn start(what: &'static str, total: u64) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let drawer = (std::io::stderr().is_terminal() && total > 0).then(|| {
            let (bytes, done) = (bytes.clone(), done.clone());
            std::thread::spawn(move || draw(what, total, &bytes, &done))
        });
        Progress { bytes, done, drawer }
    }

    /// The counter to hand to the hasher.
    pub fn counter(&self) -> &AtomicU64 {
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

fn draw(what: &str, total: u64, bytes: &AtomicU64, done: &AtomicBool) {
    let start = Instant::now();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut err = std::io::stderr();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(REDRAW_INTERVAL);
        let n = bytes.load(Ordering::Relaxed).min(total);
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
