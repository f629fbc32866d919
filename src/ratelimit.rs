//! [`RateLimit`]: a token bucket, for routes that must not be called in a tight loop (`/mask`
//! could otherwise become an oracle for guessing short values one request at a time).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` requests per second, bursts up to twice that.
pub(crate) struct RateLimit {
    rate: f64,
    burst: f64,
    // std lock: a few arithmetic operations, never held across `.await`.
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full bucket.
    pub(crate) fn new(rate_per_second: u32) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self { rate, burst: rate * 2.0, bucket: Mutex::new((rate * 2.0, Instant::now())) }
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn take(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.0) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let limit = RateLimit::new(2);
        for _ in 0..4 {
            assert!(limit.take().is_ok());
        }
        let wait = limit.take().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
    }
}
