//! A per-client token bucket for the writes that need no token (node-signed
//! entries and heartbeats): their signatures are checked by the writer and
//! the heartbeat handler, so without a bound one client could make the
//! authority spend its CPU and its writer's time on them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second a client may make, sustained.
pub const RATE_PER_SECOND: f64 = 10.0;
/// Requests a client may make at once after being idle.
pub const BURST: f64 = 40.0;
/// Clients tracked before idle ones are forgotten.
const CLIENTS_MAX: usize = 65_536;

/// Token buckets by client address.
#[derive(Default)]
pub struct RateLimit {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    /// Take one token for `client`; `Err(wait)` when it has none left.
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Err(Duration::from_secs(1));
        };
        if b.len() >= CLIENTS_MAX {
            // Buckets idle long enough to be full again carry nothing.
            let full = Duration::from_secs_f64(BURST / RATE_PER_SECOND);
            b.retain(|_, (_, t)| now.duration_since(*t) < full);
        }
        let (tokens, last) = b.entry(client).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * RATE_PER_SECOND).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / RATE_PER_SECOND))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_clients_apart() {
        let r = RateLimit::default();
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let allowed = (0..100).filter(|_| r.take(a).is_ok()).count();
        assert_eq!(allowed, BURST as usize);
        assert!(r.take(a).is_err());
        assert!(r.take(b).is_ok(), "another client has its own bucket");
    }
}
