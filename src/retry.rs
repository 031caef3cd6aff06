//! Pacing and waiting, written once: the token bucket that paces the client at Pinpoint's
//! quotas and limits the server's operations, and the backoff every retry, requeue and poll
//! waits by (exponential, capped, with jitter so that many waiters spread out).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
///
/// Guarantees: over any window, at most `burst + rate × window` tokens are handed out, by
/// [`reserve`](Self::reserve) and [`try_take`](Self::try_take) together.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens (negative while reservations wait) and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self::full_at(rate, burst, Instant::now())
    }

    /// A bucket full at `now`.
    pub fn full_at(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    /// Takes a token now or later, in arrival order: how long to wait before using it.
    pub fn reserve(&self, now: Instant) -> Option<Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = self.refill(&mut s, now);
        *tokens -= 1.0;
        (*tokens < 0.0).then(|| Duration::from_secs_f64(-*tokens / self.rate))
    }

    /// Takes a token if one is there now (a server refusing what is over its quota).
    pub fn try_take(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = self.refill(&mut s, now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill<'a>(&self, s: &'a mut (f64, Instant), now: Instant) -> &'a mut f64 {
        let (tokens, last) = s;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now.max(*last);
        tokens
    }
}

/// How much of a delay is left to chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// None: the delay as computed (a poll nobody else shares).
    None,
    /// Anywhere in [0, delay): "full jitter", for retries of many clients at once.
    Full,
    /// In [delay/2, delay): never much sooner than asked, still spread.
    Half,
}

/// Exponential backoff: `base × 2^attempt`, at most `cap`, with `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => exp.mul_f64(fastrand::f64()),
            Jitter::Half => exp.mul_f64(0.5 + fastrand::f64() * 0.5),
        }
    }
}

/// `d` spread by ± `spread` (0.1: ±10 %), so that replicas and restarts do not act in step.
pub fn jittered(d: Duration, spread: f64) -> Duration {
    d.mul_f64(1.0 - spread + fastrand::f64() * 2.0 * spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_hands_out_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::full_at(10.0, 3.0, t0);
        let taken = (0..5).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 3, "the burst, and no more at once");
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(
            b.try_take(t0 + Duration::from_millis(100)),
            "one more after 1/rate"
        );
    }

    #[test]
    fn reservations_wait_in_arrival_order() {
        let t0 = Instant::now();
        let b = TokenBucket::full_at(10.0, 1.0, t0);
        assert_eq!(b.reserve(t0), None);
        let second = b.reserve(t0).expect("waits");
        let third = b.reserve(t0).expect("waits");
        assert!((second.as_secs_f64() - 0.1).abs() < 1e-9);
        assert!((third.as_secs_f64() - 0.2).abs() < 1e-9);
        assert!(!b.try_take(t0), "reserved tokens are not handed out again");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_within_its_jitter() {
        let plain = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            jitter: Jitter::None,
        };
        let d: Vec<u128> = (0..7).map(|a| plain.delay(a).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1600, 2000, 2000]);
        let half = Backoff {
            jitter: Jitter::Half,
            ..plain
        };
        let full = Backoff {
            jitter: Jitter::Full,
            ..plain
        };
        for a in 0..40 {
            let exp = plain.delay(a);
            assert!(half.delay(a) >= exp / 2 && half.delay(a) < exp);
            assert!(full.delay(a) < exp);
        }
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10), 0.1);
            assert!(j >= Duration::from_secs(9) && j <= Duration::from_secs(11));
        }
    }
}
