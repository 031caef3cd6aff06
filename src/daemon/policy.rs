//! The controller's error policy: from what a round did, when each application is tried
//! again (exponential backoff with jitter for the ones that failed), when the next round
//! wakes, and whether the controller is ready.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::retry::{Backoff, Jitter};

use super::metrics::Outcome;
use super::round::RoundOutcome;

/// Exponential backoff with jitter, capped: 1 s, 2 s, 4 s … 5 min, each × [0.5, 1).
pub fn backoff(attempts: u32) -> Duration {
    Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
        jitter: Jitter::Half,
    }
    .delay(attempts)
}

/// The interval with ±10 % jitter, so that replicas and restarts spread out.
pub fn jittered(interval: Duration) -> Duration {
    crate::retry::jittered(interval, 0.1)
}

/// How soon an application another applier holds is looked at again (±25 %).
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Failing {
    attempts: u32,
    until: Instant,
}

/// Applications backing off, by shard key.
#[derive(Debug, Default)]
pub struct Backoffs {
    failing: BTreeMap<String, Failing>,
}

impl Backoffs {
    /// Whether the application may be reconciled at `now`.
    pub fn due(&self, shard_key: &str, now: Instant) -> bool {
        self.failing.get(shard_key).is_none_or(|f| f.until <= now)
    }

    /// How long until the application is tried again, when it is backing off.
    pub fn retry_in(&self, shard_key: &str, now: Instant) -> Option<Duration> {
        self.failing
            .get(shard_key)
            .map(|f| f.until.saturating_duration_since(now))
    }

    /// Records a round: applications that failed back off longer, the others are cleared.
    /// Returns, per failed application, the delay before its next attempt.
    pub fn record(&mut self, round: &RoundOutcome, now: Instant) -> BTreeMap<String, Duration> {
        let mut delays = BTreeMap::new();
        for app in &round.apps {
            let busy = match app.result {
                // Not a failure: another applier is at work. Look again shortly.
                Outcome::Busy => true,
                Outcome::Error => false,
                _ => {
                    self.failing.remove(&app.shard_key);
                    continue;
                }
            };
            let f = self
                .failing
                .entry(app.shard_key.clone())
                .or_insert(Failing {
                    attempts: 0,
                    until: now,
                });
            let delay = if busy {
                crate::retry::jittered(BUSY_RETRY, 0.25)
            } else {
                f.attempts += 1;
                backoff(f.attempts - 1)
            };
            f.until = now + delay;
            delays.insert(app.shard_key.clone(), delay);
        }
        delays
    }

    /// When the next round must start: the next resync, or an earlier backoff expiry.
    pub fn next_wake(&self, next_resync: Instant) -> Instant {
        self.failing
            .values()
            .map(|f| f.until)
            .min()
            .map_or(next_resync, |b| b.min(next_resync))
    }
}

impl Backoffs {
    /// Whether any of these applications is backing off.
    /// Forgets applications the manifests no longer name, unless this round planned them
    /// (an application holding managed segments without manifests stays until it is clean).
    pub fn forget_others(&mut self, round: &RoundOutcome) {
        if round.no_state || round.target_error.is_some() {
            return;
        }
        self.failing.retain(|k, _| {
            round.desired_keys.contains(k) || round.apps.iter().any(|a| &a.shard_key == k)
        });
    }
}

/// Readiness, as Flux and Argo CD read it: true once a round has finished over a loaded
/// state (the manifests, or the last good ones), whatever each application's outcome or the
/// target's answer (failures show in `/`, `status`, metrics and logs); it then stays so. A
/// controller that held readiness back on one bad manifest would block every rollout,
/// including the one that fixes it.
pub fn ready_after(was_ready: bool, round: &RoundOutcome) -> bool {
    was_ready || !round.no_state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::round::AppOutcome;

    fn app(key: &str, result: Outcome) -> AppOutcome {
        AppOutcome {
            key: key.into(),
            shard_key: key.into(),
            app_id: Some(key.into()),
            name: "Shop".into(),
            result,
            error: (result == Outcome::Error).then(|| "boom".into()),
            blocked: vec![],
            blocked_kinds: vec![],
            drifted: vec![],
            managed: 1,
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert!(backoff(0) <= Duration::from_secs(1) && backoff(0) >= Duration::from_millis(500));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) <= Duration::from_secs(8));
        assert!(backoff(30) <= Duration::from_secs(300));
    }

    #[test]
    fn a_failing_application_backs_off_alone_and_success_clears_it() {
        let now = Instant::now();
        let mut b = Backoffs::default();
        let round = RoundOutcome {
            apps: vec![app("a", Outcome::Error), app("b", Outcome::Success)],
            ..Default::default()
        };
        let delays = b.record(&round, now);
        assert_eq!(delays.keys().collect::<Vec<_>>(), ["a"]);
        assert!(!b.due("a", now) && b.due("b", now));
        let wake = b.next_wake(now + Duration::from_secs(3600));
        assert!(wake <= now + Duration::from_secs(1), "woken for the retry");
        // A second failure waits longer (1 s × [0.5, 1) then 2 s × [0.5, 1)).
        let second = b.record(&round, now)["a"];
        assert!(second >= Duration::from_secs(1), "{second:?}");
        let ok = RoundOutcome {
            apps: vec![app("a", Outcome::Success)],
            ..Default::default()
        };
        b.record(&ok, now);
        assert!(b.due("a", now));
        assert_eq!(
            b.next_wake(now + Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[test]
    fn readiness_comes_with_the_first_finished_round_whatever_its_outcome_and_stays() {
        let failed = RoundOutcome {
            apps: vec![app("a", Outcome::Error), app("b", Outcome::Success)],
            ..Default::default()
        };
        let unreachable = RoundOutcome {
            target_error: Some("cannot reach".into()),
            ..Default::default()
        };
        let never_loaded = RoundOutcome {
            no_state: true,
            ..Default::default()
        };
        assert!(ready_after(false, &failed), "one failing application");
        assert!(
            ready_after(false, &unreachable),
            "a target that does not answer"
        );
        assert!(
            !ready_after(false, &never_loaded),
            "no manifests loaded yet"
        );
        assert!(ready_after(true, &never_loaded), "once ready, stays ready");
    }
}
