//! A best-effort lease on an application (or a Customer Profiles domain), so two appliers
//! (a CI apply and the controller, say) do not change it at once.
//!
//! Pinpoint has no conditional write, so the lease is a tag on the application
//! (`segmentctl:lease = <token> <expires> <holder>`): read it; if it is free (absent,
//! expired, or ours), write ours, wait long enough for any applier that read "free" at the
//! same moment to have written too, and read it back: the one whose token is there holds
//! it. The wait makes the race window the time between a reader's read and its write (one
//! request), not the whole apply. A reader whose read and write would be more than half the
//! wait apart (a slow answer, a paused process) reads again rather than write on what it saw:
//! another applier may have written and read back meanwhile.
//!
//! Guarantees: while the lease is held and every applier takes it, no two apply to the same
//! application at once; a lease that is not released (a killed process) expires by itself.
//! What it cannot promise (two writes landing within one request of each other, a clock far
//! off) is made safe by the planner's deterministic duplicate rule: every applier keeps the
//! same one of two segments claiming one name, and deletes the other.

use std::time::Duration;

use std::future::Future;

use crate::model::Tags;
use crate::targets::pinpoint::Pinpoint;
use crate::targets::profiles::{Profiles, ProfilesError, SdkProfiles};

/// What a lease needs of a target: the tags of the resource it is on (an application, a
/// domain), read, written and removed.
pub trait LeaseTags: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;
    fn lease_tags(&self, arn: &str) -> impl Future<Output = Result<Tags, Self::Error>> + Send;
    fn set_lease_tags(
        &self,
        arn: &str,
        tags: &Tags,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn remove_lease_tags(
        &self,
        arn: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<P: Pinpoint> LeaseTags for P {
    type Error = crate::targets::pinpoint::PinpointError;
    async fn lease_tags(&self, arn: &str) -> Result<Tags, Self::Error> {
        self.list_tags(arn).await
    }
    async fn set_lease_tags(&self, arn: &str, tags: &Tags) -> Result<(), Self::Error> {
        self.tag(arn, tags).await
    }
    async fn remove_lease_tags(&self, arn: &str, keys: &[String]) -> Result<(), Self::Error> {
        self.untag(arn, keys).await
    }
}

/// On a Customer Profiles target the lease is a tag on the domain.
impl LeaseTags for SdkProfiles {
    type Error = ProfilesError;
    async fn lease_tags(&self, arn: &str) -> Result<Tags, Self::Error> {
        self.list_tags(arn).await
    }
    async fn set_lease_tags(&self, arn: &str, tags: &Tags) -> Result<(), Self::Error> {
        self.tag(arn, tags).await
    }
    async fn remove_lease_tags(&self, arn: &str, keys: &[String]) -> Result<(), Self::Error> {
        self.untag(arn, keys).await
    }
}

/// The application tag holding the lease.
pub const TAG_LEASE: &str = crate::TAG_LEASE;

/// How long a lease lasts unless renewed: [`hold_while`] renews it every third of this while
/// the work runs, so a killed applier's lease is gone within this.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How long a lease lasts: [`DEFAULT_TTL`], or `SEGMENTCTL_LEASE_TTL` seconds (at least 1;
/// tests of a paused applier shorten it).
pub fn ttl() -> Duration {
    std::env::var("SEGMENTCTL_LEASE_TTL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_TTL, |s| Duration::from_secs(s.max(1)))
}

/// How long to wait after writing the lease before reading it back: far longer than the
/// time between another applier's read and its write (one request).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(250);

/// Reads of the lease that took too long before taking it anyway.
const STALE_READS: u32 = 3;

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub app_arn: String,
    token: String,
    holder: String,
}

/// Someone else's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub holder: String,
    /// Unix seconds.
    pub expires: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{} is applying to this application (lease until {}); run again when it is done, or pass --wait to queue behind it", .0.holder, crate::text::iso(time::OffsetDateTime::from_unix_timestamp(.0.expires as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)))]
    Busy(Held),
    #[error("cannot take the lease")]
    Api(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Who is applying: `owner@host.pid`.
pub fn holder(owner: &str) -> String {
    format!(
        "{}@{}.{}",
        clean(owner),
        clean(&hostname()),
        std::process::id()
    )
}

fn parse(value: &str) -> Option<(String, Held)> {
    let mut parts = value.splitn(3, ' ');
    let token = parts.next()?.to_string();
    let expires = parts.next()?.parse().ok()?;
    let holder = parts.next()?.to_string();
    Some((token, Held { holder, expires }))
}

/// Whose lease the tags show, if a live one other than `token`. A lease held by a process
/// of this host that no longer runs (killed, say) is not live.
fn other_lease(tags: &Tags, token: &str, now: u64) -> Option<Held> {
    let (t, held) = parse(tags.get(TAG_LEASE)?)?;
    (t != token && held.expires > now && !holder_is_gone(&held.holder)).then_some(held)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether `owner@host.pid` names a process of this host that has exited.
fn holder_is_gone(holder: &str) -> bool {
    let Some((_, place)) = holder.rsplit_once('@') else {
        return false;
    };
    let Some((host, pid)) = place.rsplit_once('.') else {
        return false;
    };
    let (Ok(pid), true) = (pid.parse::<i32>(), host == clean(&hostname())) else {
        return false;
    };
    if pid <= 0 || pid == std::process::id() as i32 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(60)
        .collect()
}

/// Takes the lease on the application `app_arn` for `ttl`, waiting `settle` before reading
/// it back.
///
/// Errors: [`LeaseError::Busy`] naming the holder of a live lease.
pub async fn acquire<P: LeaseTags>(
    p: &P,
    app_arn: &str,
    holder: &str,
    ttl: Duration,
    settle: Duration,
) -> Result<Lease, LeaseError> {
    let token = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    for attempt in 1.. {
        let asked = tokio::time::Instant::now();
        let tags = p
            .lease_tags(app_arn)
            .await
            .map_err(|e| LeaseError::Api(Box::new(e)))?;
        if let Some(held) = other_lease(&tags, &token, now_unix()) {
            return Err(LeaseError::Busy(held));
        }
        let took = asked.elapsed();
        if settle.is_zero() || took <= settle / 2 {
            break;
        }
        // What we read may be older than another applier's write and read-back.
        if attempt == STALE_READS {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                settle_ms = settle.as_millis() as u64,
                "reading the lease keeps taking over half the settle time; taking it anyway, so two appliers may overlap (the planner's duplicate rule still keeps one of any two segments)"
            );
            break;
        }
    }
    let value = format!("{token} {} {holder}", now_unix() + ttl.as_secs());
    p.set_lease_tags(app_arn, &Tags::from([(TAG_LEASE.to_string(), value)]))
        .await
        .map_err(|e| LeaseError::Api(Box::new(e)))?;
    tokio::time::sleep(settle).await;
    let tags = p
        .lease_tags(app_arn)
        .await
        .map_err(|e| LeaseError::Api(Box::new(e)))?;
    match tags.get(TAG_LEASE).and_then(|v| parse(v)) {
        Some((t, _)) if t == token => Ok(Lease {
            app_arn: app_arn.to_string(),
            token,
            holder: holder.to_string(),
        }),
        Some((_, held)) => Err(LeaseError::Busy(held)),
        // Removed under us (released by someone who thought it theirs): try again later.
        None => Err(LeaseError::Busy(Held {
            holder: "another applier".into(),
            expires: now_unix(),
        })),
    }
}

/// Takes the lease, waiting while someone else holds it (polling every `poll`), up to
/// `patience`; tells `waiting` once who it waits for.
pub async fn acquire_waiting<P: LeaseTags>(
    p: &P,
    app_arn: &str,
    holder: &str,
    ttl: Duration,
    settle: Duration,
    patience: Duration,
    waiting: impl Fn(&Held),
) -> Result<Lease, LeaseError> {
    let start = tokio::time::Instant::now();
    let mut told = false;
    loop {
        match acquire(p, app_arn, holder, ttl, settle).await {
            Err(LeaseError::Busy(held)) if start.elapsed() < patience => {
                if !told {
                    waiting(&held);
                    told = true;
                }
                // Every 1 to 1.5 s: appliers waiting together do not poll in step.
                let poll = crate::retry::jittered(Duration::from_millis(1250), 0.2);
                tokio::time::sleep(poll).await;
            }
            other => return other,
        }
    }
}

/// Whether the leases an apply runs under are still its own: the executor asks before each
/// step it starts ([`Fence::holds`]); [`hold_while`]'s renewals answer.
///
/// A lease is known ours until two thirds of its time after the last read that found our
/// token; past that (a process paused, a renewal that failed) a step waits for the next
/// renewal, which reads the lease back before writing: if another applier has it now, or it
/// was removed, the lease is lost and no further step starts.
#[derive(Clone, Debug)]
pub struct Fence {
    /// None: no lease to hold.
    state: Option<tokio::sync::watch::Receiver<FenceState>>,
}

#[derive(Clone, Debug)]
enum FenceState {
    /// Ours until then.
    Until(tokio::time::Instant),
    /// Taken by this holder (or removed).
    Lost(String),
}

impl Fence {
    /// `Ok` once the leases are known to be ours; `Err(holder)` when another applier holds
    /// one now.
    pub async fn holds(&self) -> Result<(), String> {
        let Some(mut rx) = self.state.clone() else {
            return Ok(());
        };
        loop {
            match &*rx.borrow_and_update() {
                FenceState::Lost(who) => return Err(who.clone()),
                FenceState::Until(t) if tokio::time::Instant::now() < *t => return Ok(()),
                FenceState::Until(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err("nobody: the lease is no longer renewed".into());
            }
        }
    }

    /// A fence that always holds: no lease is taken (nothing to change).
    pub fn none() -> Self {
        Self { state: None }
    }
}

/// What a renewal found.
enum Renewal {
    Ours,
    Lost(String),
}

/// Reads each lease back and, when every one is still ours, writes it again with a new
/// expiry. A lease another applier holds now, or that was removed, is lost: it is not
/// written (writing would take it back from an applier that may already be working).
async fn renew<P: LeaseTags>(p: &P, leases: &[Lease], ttl: Duration) -> Result<Renewal, P::Error> {
    for l in leases {
        let tags = p.lease_tags(&l.app_arn).await?;
        match tags.get(TAG_LEASE).and_then(|v| parse(v)) {
            Some((t, _)) if t == l.token => {}
            Some((_, held)) => return Ok(Renewal::Lost(held.holder)),
            None => {
                return Ok(Renewal::Lost(
                    "another applier (the lease was removed)".into(),
                ))
            }
        }
    }
    for l in leases {
        let value = format!("{} {} {}", l.token, now_unix() + ttl.as_secs(), l.holder);
        p.set_lease_tags(&l.app_arn, &Tags::from([(TAG_LEASE.to_string(), value)]))
            .await?;
    }
    Ok(Renewal::Ours)
}

/// Runs `work` while holding `leases`, renewing them every third of `ttl`; `work` is given
/// the [`Fence`] its steps ask before they start. The leases are read back and renewed
/// first of all: they may have been taken long before (a plan shown, a confirmation typed).
pub async fn hold_while<P: LeaseTags, T, F: std::future::Future<Output = T>>(
    p: &P,
    leases: &[Lease],
    ttl: Duration,
    work: impl FnOnce(Fence) -> F,
) -> T {
    if leases.is_empty() {
        return work(Fence::none()).await;
    }
    let (tx, rx) = tokio::sync::watch::channel(FenceState::Until(tokio::time::Instant::now()));
    let renewing = async {
        // Until the written expiry passes, a failed renewal is tried again soon.
        let mut expires = tokio::time::Instant::now() + ttl;
        loop {
            let asked = tokio::time::Instant::now();
            match renew(p, leases, ttl).await {
                Ok(Renewal::Ours) => {
                    expires = asked + ttl;
                    let _ = tx.send(FenceState::Until(asked + ttl * 2 / 3));
                    tokio::time::sleep(ttl / 3).await;
                }
                Ok(Renewal::Lost(holder)) => {
                    tracing::warn!(holder = %crate::text::safe(&holder), "the lease was taken by another applier; no further step starts");
                    let _ = tx.send(FenceState::Lost(holder));
                    return std::future::pending::<()>().await;
                }
                Err(e) if tokio::time::Instant::now() >= expires => {
                    tracing::warn!(error = %e, "cannot renew the lease, and it has expired; no further step starts");
                    let _ = tx.send(FenceState::Lost(
                        "nobody known: the lease could not be renewed before it expired".into(),
                    ));
                    return std::future::pending::<()>().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the lease; trying again");
                    tokio::time::sleep(Duration::from_secs(2).min(ttl / 3)).await;
                }
            }
        }
    };
    let fence = Fence { state: Some(rx) };
    tokio::select! {
        out = work(fence) => out,
        () = renewing => unreachable!("renewing never ends"),
    }
}

/// Gives the lease back, if it is still ours (best effort: an error leaves it to expire).
pub async fn release<P: LeaseTags>(p: &P, lease: &Lease) {
    match p.lease_tags(&lease.app_arn).await {
        Ok(tags)
            if tags
                .get(TAG_LEASE)
                .and_then(|v| parse(v))
                .is_some_and(|(t, _)| t == lease.token) =>
        {
            if let Err(e) = p
                .remove_lease_tags(&lease.app_arn, &[TAG_LEASE.to_string()])
                .await
            {
                tracing::warn!(error = %e, "cannot release the lease; it expires by itself");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot release the lease; it expires by itself"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::pinpoint::MemoryPinpoint;

    /// The ARN of a new application "shop" in `p`.
    fn shop(p: &MemoryPinpoint) -> String {
        let id = p.add_app("shop", Tags::new());
        format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{id}")
    }

    #[tokio::test]
    async fn one_of_two_takes_the_lease_and_the_other_is_told_who() {
        let p = MemoryPinpoint::new();
        let arn = shop(&p);
        let settle = Duration::from_millis(10);
        let a = acquire(&p, &arn, "ci@runner.1", DEFAULT_TTL, settle)
            .await
            .unwrap();
        match acquire(&p, &arn, "run@pod.2", DEFAULT_TTL, settle).await {
            Err(LeaseError::Busy(h)) => assert_eq!(h.holder, "ci@runner.1"),
            other => panic!("{other:?}"),
        }
        release(&p, &a).await;
        let b = acquire(&p, &arn, "run@pod.2", DEFAULT_TTL, settle)
            .await
            .unwrap();
        // A released lease that is no longer ours is not removed.
        release(&p, &a).await;
        assert!(matches!(
            acquire(&p, &arn, "x@y.3", DEFAULT_TTL, settle).await,
            Err(LeaseError::Busy(_))
        ));
        release(&p, &b).await;
    }

    #[tokio::test]
    async fn an_applier_whose_read_arrives_late_reads_again_and_does_not_take_a_held_lease() {
        let p = std::sync::Arc::new(MemoryPinpoint::new());
        let arn = shop(&p);
        let settle = Duration::from_millis(40);
        // B reads "free", and the answer reaches it only after A has written, waited and
        // read back. Writing on that old answer would give both the lease.
        p.delay_tag_reads(1, settle * 3);
        let b = tokio::spawn({
            let (p, arn) = (p.clone(), arn.clone());
            async move { acquire(&*p, &arn, "late@b.2", DEFAULT_TTL, settle).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let a = acquire(&*p, &arn, "ci@a.1", DEFAULT_TTL, settle)
            .await
            .expect("A takes the free lease");
        match b.await.unwrap() {
            Err(LeaseError::Busy(h)) => assert_eq!(h.holder, "ci@a.1"),
            other => panic!("B must see A's lease: {other:?}"),
        }
        // A still holds it.
        let tags = p.lease_tags(&arn).await.unwrap();
        assert!(tags[TAG_LEASE].starts_with(&a.token), "{tags:?}");
    }

    #[tokio::test]
    async fn over_an_api_always_slower_than_the_settle_the_lease_is_still_taken() {
        let p = MemoryPinpoint::new();
        let arn = shop(&p);
        let settle = Duration::from_millis(10);
        p.delay_tag_reads(100, settle);
        acquire(&p, &arn, "ci@a.1", DEFAULT_TTL, settle)
            .await
            .expect("a slow API does not lock appliers out");
        assert_eq!(
            p.calls("ListTagsForResource"),
            u64::from(STALE_READS) + 1,
            "read again until the limit, then once more after writing"
        );
    }

    #[tokio::test]
    async fn a_lease_of_a_process_of_this_host_that_is_gone_is_free() {
        let p = MemoryPinpoint::new();
        let arn = shop(&p);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let held = format!(
            "feedfeedfeedfeed {} ci@{}.{dead}",
            now_unix() + 600,
            clean(&hostname())
        );
        p.set_lease_tags(&arn, &Tags::from([(TAG_LEASE.to_string(), held)]))
            .await
            .unwrap();
        acquire(&p, &arn, "me@host.2", DEFAULT_TTL, Duration::ZERO)
            .await
            .unwrap();
        // A live one of another host is respected.
        let other = format!("feedfeedfeedfeed {} ci@elsewhere.{dead}", now_unix() + 600);
        p.set_lease_tags(&arn, &Tags::from([(TAG_LEASE.to_string(), other)]))
            .await
            .unwrap();
        assert!(matches!(
            acquire(&p, &arn, "me@host.2", DEFAULT_TTL, Duration::ZERO).await,
            Err(LeaseError::Busy(_))
        ));
    }

    #[tokio::test]
    async fn an_expired_lease_is_free() {
        let p = MemoryPinpoint::new();
        let arn = shop(&p);
        let stale = format!("deadbeefdeadbeef {} gone@host.1", now_unix() - 1);
        p.set_lease_tags(&arn, &Tags::from([(TAG_LEASE.to_string(), stale)]))
            .await
            .unwrap();
        acquire(&p, &arn, "me@host.2", DEFAULT_TTL, Duration::ZERO)
            .await
            .unwrap();
    }
}
