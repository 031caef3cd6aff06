//! The reconciler's one door to the Segment API: the operations it uses, as a typed
//! interface with two implementations. [`SdkPinpoint`] talks to a real server through
//! `aws-sdk-pinpoint` (pacing, retries, pagination and the create-once rule written once);
//! [`MemoryPinpoint`] keeps everything in memory, so the real executor runs in property
//! tests without a server.

mod client;
pub mod convert;
mod memory;
/// Pacing, retries and counters, shared with the other target.
pub use crate::targets::pacing;

use std::future::Future;

pub use client::SdkPinpoint;
pub use memory::MemoryPinpoint;

use crate::model::{SegmentResponse, Tags, WriteSegmentRequest};
use crate::plan::live::{LiveApp, LiveCampaign, LiveJourney};
use crate::targets::pinpoint::pacing::CallError;

/// How an object this reconciler creates is recognized afterwards: its ownership tags.
/// After a create whose outcome is unknown, the object is looked for by its claim before
/// anything is sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub name: String,
}

/// What a create made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub arn: String,
    pub version: i32,
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// It was gone already (a rerun after a lost answer, or someone else deleted it).
    AlreadyGone,
}

/// An import job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    pub url: String,
    pub format: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub register_endpoints: bool,
    /// Import a new version of this IMPORT segment; none: define a new one.
    pub segment_id: Option<String>,
    pub segment_name: Option<String>,
}

/// How an import job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub job_id: String,
    pub completed: bool,
    pub segment_id: Option<String>,
    pub processed: u64,
    pub rejected: u64,
    /// The first failures, as the server words them (`file:line: why`).
    pub failures: Vec<String>,
}

/// Told while an import runs: rows read so far.
pub type ImportProgress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// A failure of one operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PinpointError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// The answer holds a value the shared model cannot represent.
    #[error(transparent)]
    Unrepresentable(#[from] crate::targets::pinpoint::convert::Unrepresentable),
}

impl PinpointError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, PinpointError::Call(c) if c.is_not_found())
    }
    pub fn call(&self) -> Option<&CallError> {
        match self {
            PinpointError::Call(c) => Some(c),
            PinpointError::Unrepresentable(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, PinpointError>;

/// The operations the reconciler uses.
///
/// Guarantees of every implementation: lists return every page; `create_*` create at most
/// one object per call, even when an answer is lost (they look for the claim before trying
/// again); the other writes are safe to repeat.
pub trait Pinpoint: Send + Sync {
    /// Every application on the target.
    fn list_apps(&self) -> impl Future<Output = Result<Vec<LiveApp>>> + Send;
    /// Every segment of an application, with its tags.
    fn list_segments(&self, app: &str)
        -> impl Future<Output = Result<Vec<SegmentResponse>>> + Send;
    fn list_campaigns(&self, app: &str) -> impl Future<Output = Result<Vec<LiveCampaign>>> + Send;
    fn list_journeys(&self, app: &str) -> impl Future<Output = Result<Vec<LiveJourney>>> + Send;
    /// The tags of an application, segment, campaign or journey.
    fn list_tags(&self, arn: &str) -> impl Future<Output = Result<Tags>> + Send;
    /// Creates an application carrying `tags` (which hold the claim's ownership tags).
    fn create_app(
        &self,
        name: &str,
        tags: &Tags,
        claim: &Claim,
    ) -> impl Future<Output = Result<Created>> + Send;
    /// Creates a segment whose base segments are all named by id; `def.tags` holds the
    /// claim's ownership tags.
    fn create_segment(
        &self,
        app: &str,
        def: &WriteSegmentRequest,
        claim: &Claim,
    ) -> impl Future<Output = Result<Created>> + Send;
    /// Replaces a segment's definition; returns the new version.
    fn update_segment(
        &self,
        app: &str,
        id: &str,
        def: &WriteSegmentRequest,
    ) -> impl Future<Output = Result<i32>> + Send;
    fn delete_segment(&self, app: &str, id: &str) -> impl Future<Output = Result<Deleted>> + Send;
    /// Deletes an application: only one this applier created and lost to an older claimant
    /// of the same name (see [`crate::reconcile::apply::create_apps`]); segmentctl deletes no other.
    fn delete_app(&self, id: &str) -> impl Future<Output = Result<Deleted>> + Send;
    fn tag(&self, arn: &str, tags: &Tags) -> impl Future<Output = Result<()>> + Send;
    fn untag(&self, arn: &str, keys: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// Runs an import job to its end. A job already running for the same source and
    /// segment (one an interrupted apply started) is waited for instead of a second one.
    fn import(
        &self,
        app: &str,
        req: &ImportRequest,
        progress: ImportProgress<'_>,
    ) -> impl Future<Output = Result<ImportOutcome>> + Send;
}

/// Drives futures together, keeping their order.
pub async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut slots: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if slots[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => slots[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().flatten().collect()
}
