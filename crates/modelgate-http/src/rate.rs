//! Token buckets: one ([`Bucket`]), and one per client address
//! ([`PerClient`]) for the requests anyone may send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket refilled at `rate` per second up to `burst`.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens.
    pub fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take a token at `now`; `Err(wait)` until the next one when empty.
    pub fn take_at(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        let rate = rate.max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Take a token now: whether there was one.
    pub fn take(&mut self, (rate, burst): (f64, f64)) -> bool {
        self.take_at(Instant::now(), rate, burst).is_ok()
    }
}

/// Clients tracked before idle ones are forgotten.
const CLIENTS_MAX: usize = 65_536;

/// A bucket per client address: a sustained rate and a burst of
/// `burst_seconds` of it. Clients behind one address (a NAT) share one.
pub struct PerClient {
    inner: Mutex<(f64, HashMap<IpAddr, Bucket>)>,
    burst_seconds: f64,
}

impl PerClient {
    /// `rate` per second per client, bursts of `burst_seconds` of it.
    pub fn new(rate: f64, burst_seconds: f64) -> Self {
        Self {
            inner: Mutex::new((rate.max(0.01), HashMap::new())),
            burst_seconds,
        }
    }

    /// Set the sustained rate (every client starts again with a full bucket).
    pub fn set_rate(&self, per_second: f64) {
        if let Ok(mut b) = self.inner.lock() {
            b.0 = per_second.max(0.01);
            b.1.clear();
        }
    }

    /// The sustained rate per client.
    pub fn rate(&self) -> f64 {
        self.inner.lock().map_or(0.01, |b| b.0)
    }

    /// Take one token for `client`; `Err(wait)` when it has none left.
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut b) = self.inner.lock() else {
            return Err(Duration::from_secs(1));
        };
        let rate = b.0;
        let burst = (rate * self.burst_seconds).max(1.0);
        if b.1.len() >= CLIENTS_MAX {
            // Buckets idle long enough to be full again carry nothing.
            let full = Duration::from_secs_f64(self.burst_seconds);
            b.1.retain(|_, k| now.saturating_duration_since(k.last) < full);
        }
        b.1.entry(client)
            .or_insert_with(|| Bucket::full(burst))
            .take_at(now, rate, burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_clients_apart() {
        let r = PerClient::new(10.0, 4.0);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let allowed = (0..100).filter(|_| r.take(a).is_ok()).count();
        assert_eq!(allowed, 40);
        assert!(r.take(a).is_err());
        assert!(r.take(b).is_ok(), "another client has its own bucket");
        r.set_rate(100.0);
        let allowed = (0..1000).filter(|_| r.take(a).is_ok()).count();
        assert_eq!(allowed, 400, "a higher rate, a larger burst");
    }

    #[test]
    fn one_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(2.0);
        assert!(b.take_at(t0, 1.0, 2.0).is_ok());
        assert!(b.take_at(t0, 1.0, 2.0).is_ok());
        let wait = b.take_at(t0, 1.0, 2.0).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(b.take_at(t0 + Duration::from_millis(1001), 1.0, 2.0).is_ok());
    }
}
