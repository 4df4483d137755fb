//! The wall clock, as a seam.
//!
//! Contract: [`Clock::now`] is POSIX seconds, as the node believes them. It
//! is not assumed to be monotonic: it may jump forward or back (an NTP step,
//! a VM resumed). What depends on it (the staleness of the governance view,
//! approval windows, exception expiry) must fail closed when it jumps: a
//! jump forward ages the view into `SyncInterrupted`; a jump back is judged
//! by the authority's own timestamps, which a node never takes on trust
//! beyond `FUTURE_SKEW_SECONDS`. Intervals between the node's own actions
//! (heartbeats, anchors) use the monotonic clock instead.

/// Where the node reads the time.
pub trait Clock: Send + Sync {
    /// Now, in POSIX seconds.
    fn now(&self) -> u64;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
