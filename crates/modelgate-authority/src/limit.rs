//! A per-client token bucket for the writes that need no token (node-signed
//! entries and heartbeats): their signatures are checked by the writer and
//! the heartbeat handler, so without a bound one client could make the
//! authority spend its CPU and its writer's time on them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second a client may make, sustained, by default
/// (`authority serve --node-write-rate`). Nodes behind one address (a NAT)
/// share it.
pub const RATE_PER_SECOND: f64 = 10.0;
/// Requests a client may make at once after being idle: this many seconds
/// of its rate.
pub const BURST_SECONDS: f64 = 4.0;
/// Clients tracked before idle ones are forgotten.
const CLIENTS_MAX: usize = 65_536;

struct Buckets {
    rate: f64,
    clients: HashMap<IpAddr, (f64, Instant)>,
}

/// Token buckets by client address.
pub struct RateLimit {
    buckets: Mutex<Buckets>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(Buckets {
                rate: RATE_PER_SECOND,
                clients: HashMap::new(),
            }),
        }
    }
}

impl RateLimit {
    /// Set the sustained rate per client (the burst is [`BURST_SECONDS`] of it).
    pub fn set_rate(&self, per_second: f64) {
        if let Ok(mut b) = self.buckets.lock() {
            b.rate = per_second.max(0.01);
            b.clients.clear();
        }
    }

    /// The sustained rate per client.
    pub fn rate(&self) -> f64 {
        self.buckets.lock().map_or(RATE_PER_SECOND, |b| b.rate)
    }

    /// Take one token for `client`; `Err(wait)` when it has none left.
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Err(Duration::from_secs(1));
        };
        let rate = b.rate;
        let burst = (rate * BURST_SECONDS).max(1.0);
        if b.clients.len() >= CLIENTS_MAX {
            // Buckets idle long enough to be full again carry nothing.
            let full = Duration::from_secs_f64(BURST_SECONDS);
            b.clients.retain(|_, (_, t)| now.duration_since(*t) < full);
        }
        let (tokens, last) = b.clients.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
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
        assert_eq!(allowed, (RATE_PER_SECOND * BURST_SECONDS) as usize);
        assert!(r.take(a).is_err());
        assert!(r.take(b).is_ok(), "another client has its own bucket");
        r.set_rate(100.0);
        let allowed = (0..1000).filter(|_| r.take(a).is_ok()).count();
        assert_eq!(allowed, 400, "a higher rate, a larger burst");
    }
}
