//! Calls to a target's API (through any AWS SDK client): paced by client-side token buckets
//! at the service's quotas, retried with jittered backoff on throttling and server errors,
//! and counted.
//!
//! The SDK's own retries are off: a retried CreateSegment after a lost response would create
//! a duplicate, so the decision to retry is made here, per operation, by the caller.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_pinpoint::error::{ProvideErrorMetadata, SdkError};

use crate::manifests::config::RateLimits;

/// The client's pacing: a [`crate::retry::TokenBucket`] whose reservations are waited for,
/// on tokio's clock (so that tests can pause it).
pub struct TokenBucket(crate::retry::TokenBucket);

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let now = tokio::time::Instant::now().into_std();
        Self(crate::retry::TokenBucket::full_at(rate, burst, now))
    }

    pub async fn acquire(&self) {
        if let Some(w) = self.0.reserve(tokio::time::Instant::now().into_std()) {
            tokio::time::sleep(w).await;
        }
    }
}

/// Which quota an operation counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// CreateSegment / UpdateSegment / DeleteSegment.
    SegmentWrite,
    /// Everything else.
    Other,
}

/// What a failed call tells the caller about what happened on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refused before any work (throttled, or a 4xx): nothing changed.
    NotApplied,
    /// No answer or a 5xx: the request may or may not have taken effect.
    Unknown,
}

/// A failed API call, after retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct CallError {
    pub operation: &'static str,
    /// The error code (`NotFoundException`, ...), the HTTP status, or `network`.
    pub code: String,
    pub status: Option<u16>,
    pub message: String,
    pub outcome: Outcome,
    pub retryable: bool,
}

impl CallError {
    /// Pinpoint's and Customer Profiles' names alike.
    pub fn is_not_found(&self) -> bool {
        self.code == "NotFoundException"
            || self.code == "ResourceNotFoundException"
            || self.status == Some(404)
    }
    pub fn is_forbidden(&self) -> bool {
        self.code == "ForbiddenException"
            || self.code == "AccessDeniedException"
            || self.status == Some(403)
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> CallError {
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se
                .err()
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| status.to_string());
            let message = se.err().message().unwrap_or("").to_string();
            let throttled = status == 429
                || code == "TooManyRequestsException"
                || code == "ThrottlingException";
            let server = status >= 500;
            CallError {
                operation,
                message: if message.is_empty() {
                    code.clone()
                } else {
                    format!("{code}: {message}")
                },
                code,
                status: Some(status),
                outcome: if server {
                    Outcome::Unknown
                } else {
                    Outcome::NotApplied
                },
                retryable: throttled || server,
            }
        }
        SdkError::ConstructionFailure(_) => CallError {
            operation,
            code: "client".into(),
            status: None,
            message: format!(
                "the request could not be built: {}",
                crate::text::error_chain(err)
            ),
            outcome: Outcome::NotApplied,
            retryable: false,
        },
        // Timeouts, connection failures, unreadable answers: the request may have arrived.
        _ => CallError {
            operation,
            code: "network".into(),
            status: None,
            message: crate::text::error_chain(err),
            outcome: Outcome::Unknown,
            retryable: true,
        },
    }
}

/// Backoff between attempts: exponential from `base`, capped, with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub fn delay(&self, attempt: u32) -> Duration {
        crate::retry::Backoff {
            base: self.base,
            cap: self.cap,
            jitter: crate::retry::Jitter::Full,
        }
        .delay(attempt)
    }
}

/// Requests made, by operation and result code, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    by_op: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Counters {
    fn count(&self, op: &'static str, code: &str) {
        *self
            .by_op
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((op, code.to_string()))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(&'static str, String), u64> {
        self.by_op.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The client (`aws-sdk-pinpoint`'s by default) with its pacing, retry policy and counters.
#[derive(Clone)]
pub struct Api<C = aws_sdk_pinpoint::Client> {
    pub client: C,
    /// Requests in flight at once, over everything this client does.
    inflight: Arc<tokio::sync::Semaphore>,
    writes: Arc<TokenBucket>,
    reads: Arc<TokenBucket>,
    pub retry: RetryPolicy,
    pub counters: Arc<Counters>,
}

impl<C> Api<C> {
    pub fn new(client: C, limits: RateLimits) -> Self {
        Self::with_concurrency(client, limits, 8)
    }

    pub fn with_concurrency(client: C, limits: RateLimits, concurrency: usize) -> Self {
        Self {
            client,
            inflight: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            // Writes are evenly spaced (burst 1): a server that admits one second of burst
            // then never sees more than its quota, whatever the network does to timing.
            writes: Arc::new(TokenBucket::new(limits.segment_writes, 1.0)),
            reads: Arc::new(TokenBucket::new(
                limits.reads,
                (limits.reads / 10.0).max(1.0),
            )),
            retry: RetryPolicy::default(),
            counters: Arc::new(Counters::default()),
        }
    }

    /// One attempt, paced and counted.
    pub async fn once<T, E, Fut>(
        &self,
        operation: &'static str,
        class: Class,
        call: impl FnOnce() -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match class {
            Class::SegmentWrite => self.writes.acquire().await,
            Class::Other => self.reads.acquire().await,
        }
        let permit = self.inflight.acquire().await;
        let result = call().await;
        drop(permit);
        match result {
            Ok(v) => {
                self.counters.count(operation, "ok");
                Ok(v)
            }
            Err(e) => {
                let err = classify(operation, &e);
                self.counters.count(operation, &err.code);
                Err(err)
            }
        }
    }

    /// Attempts until success, a non-retryable error, or the retry budget is spent. Only for
    /// operations that are safe to repeat (reads, updates, deletes, tags).
    pub async fn call<T, E, Fut>(
        &self,
        operation: &'static str,
        class: Class,
        call: impl Fn() -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut attempt = 0;
        loop {
            match self.once(operation, class, &call).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable && attempt + 1 < self.retry.attempts => {
                    tracing::debug!(%e, attempt, "retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_with_burst_one_spaces_acquisitions_evenly() {
        let b = TokenBucket::new(25.0, 1.0);
        let start = Instant::now();
        for _ in 0..26 {
            b.acquire().await;
        }
        // One free token, then 25 more at 40 ms each.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(p.delay(attempt) <= p.cap);
        }
    }
}
