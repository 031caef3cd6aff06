//! Per-operation rate limits at Pinpoint's quotas, and seeded fault injection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::retry::TokenBucket;

/// Pinpoint's quota for segment and campaign writes, in requests per second.
pub const WRITE_RATE: f64 = 25.0;
/// Pinpoint's quota for every other operation here.
pub const OTHER_RATE: f64 = 300.0;

/// Operations whose quota is [`WRITE_RATE`].
const WRITE_OPS: &[&str] = &[
    "CreateSegment",
    "UpdateSegment",
    "DeleteSegment",
    "CreateCampaign",
    "UpdateCampaign",
    "DeleteCampaign",
    // Customer Profiles' (its quotas are not in the model: Pinpoint's numbers are used).
    "profile.CreateDomain",
    "profile.DeleteDomain",
    "profile.CreateSegmentDefinition",
    "profile.DeleteSegmentDefinition",
    "connect-campaigns.CreateCampaign",
    "connect-campaigns.DeleteCampaign",
    "connect-campaigns.UpdateCampaignSource",
];

pub fn quota(operation: &str) -> f64 {
    if WRITE_OPS.contains(&operation) {
        WRITE_RATE
    } else {
        OTHER_RATE
    }
}

/// Token buckets, one per operation, holding one second of burst.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<&'static str, TokenBucket>>,
}

impl RateLimiter {
    /// Takes a token for `operation`; false when the operation is over its quota.
    pub fn admit(&self, operation: &'static str) -> bool {
        self.admit_at(operation, Instant::now())
    }

    /// [`admit`](Self::admit) at a given instant.
    fn admit_at(&self, operation: &'static str, now: Instant) -> bool {
        let rate = quota(operation);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(operation)
            .or_insert_with(|| TokenBucket::full_at(rate, rate, now))
            .try_take(now)
    }
}

/// Failed authentication, logged once a minute at most per source, with how many there
/// were: repeated 403s are worth knowing about, and never worth a log line each.
#[derive(Default)]
pub struct RefusalLog {
    by_source: Mutex<HashMap<Option<std::net::IpAddr>, (Instant, u64)>>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(60);
    /// Sources remembered at once; beyond this the oldest half is forgotten.
    const SOURCES: usize = 4096;

    pub fn refused(&self, source: Option<std::net::IpAddr>, why: &str) {
        let now = Instant::now();
        let mut map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::SOURCES {
            let mut times: Vec<Instant> = map.values().map(|(t, _)| *t).collect();
            times.sort();
            let cut = times[times.len() / 2];
            map.retain(|_, (t, _)| *t > cut);
        }
        let entry = map.entry(source).or_insert((now - Self::EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= Self::EVERY {
            let source = source
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            tracing::warn!(%source, refused = entry.1, reason = %crate::text::safe(why), "requests refused: authentication failed");
            *entry = (now, 0);
        }
    }
}

/// What to inject, and how often. Rates are probabilities in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Answer 500 before doing anything.
    pub fault_rate: f64,
    /// Do the work, commit it, then answer 500: the caller cannot know it succeeded.
    pub lost_response_rate: f64,
    /// Delay every answer by this much.
    pub latency: Duration,
    pub seed: u64,
}

/// Counters of what the server did, for tests and load runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub faults_injected: AtomicU64,
    pub responses_lost: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub requests: u64,
    pub throttled: u64,
    pub faults_injected: u64,
    pub responses_lost: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            faults_injected: self.faults_injected.load(Ordering::Relaxed),
            responses_lost: self.responses_lost.load(Ordering::Relaxed),
        }
    }
}

/// The fault plan in force, with its deterministic random source.
pub struct Faults {
    state: Mutex<(FaultConfig, fastrand::Rng)>,
}

/// The decision for one request, drawn when it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    pub fail_before: bool,
    pub lose_response: bool,
    pub latency: Duration,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            state: Mutex::new((config, fastrand::Rng::with_seed(config.seed))),
        }
    }

    /// Replaces the fault plan (and reseeds), e.g. to end a chaos phase in a test.
    pub fn set(&self, config: FaultConfig) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) =
            (config, fastrand::Rng::with_seed(config.seed));
    }

    pub fn draw(&self) -> Draw {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (config, rng) = &mut *guard;
        let fail_before = config.fault_rate > 0.0 && rng.f64() < config.fault_rate;
        let lose_response =
            config.lost_response_rate > 0.0 && rng.f64() < config.lost_response_rate;
        Draw {
            fail_before,
            lose_response,
            latency: config.latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_one_second_of_burst_then_refuses() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        let admitted = (0..40)
            .filter(|_| rl.admit_at("CreateSegment", now))
            .count();
        assert_eq!(admitted, 25);
        assert!(
            rl.admit_at("GetSegment", now),
            "other operations have their own bucket"
        );
        // A token comes back every 40 ms.
        let later = now + Duration::from_millis(41);
        assert!(rl.admit_at("CreateSegment", later));
        assert!(!rl.admit_at("CreateSegment", later));
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let cfg = FaultConfig {
            fault_rate: 0.3,
            lost_response_rate: 0.3,
            latency: Duration::ZERO,
            seed: 7,
        };
        let a = Faults::new(cfg);
        let b = Faults::new(cfg);
        let da: Vec<_> = (0..50)
            .map(|_| {
                let d = a.draw();
                (d.fail_before, d.lose_response)
            })
            .collect();
        let db: Vec<_> = (0..50)
            .map(|_| {
                let d = b.draw();
                (d.fail_before, d.lose_response)
            })
            .collect();
        assert_eq!(da, db);
        assert!(da.iter().any(|d| d.0) && da.iter().any(|d| d.1));
    }
}
