//! [`Pinpoint`] over `aws-sdk-pinpoint`: every request builder the reconciler sends, the
//! pagination loops, and the create-once rule, written once. Pacing and retries come from
//! [`Api`].

use std::collections::HashMap;

use aws_sdk_pinpoint::types as t;

use super::{Claim, Created, Deleted, Pinpoint, PinpointError, Result};
use crate::model::{SegmentResponse, Tags, WriteSegmentRequest};
use crate::plan::live::{claim_order, managed_name, LiveApp, LiveCampaign, LiveJourney};
use crate::targets::pinpoint::convert;
use crate::targets::pinpoint::pacing::{Api, CallError, Class, Outcome};

/// The page size asked for on every list: the largest the API accepts.
const PAGE: &str = "1000";

/// The Segment API through the SDK, paced and retried by [`Api`].
#[derive(Clone)]
pub struct SdkPinpoint {
    pub api: Api,
}

impl SdkPinpoint {
    pub fn new(api: Api) -> Self {
        Self { api }
    }

    /// Runs a non-idempotent create until it is known to have happened exactly once: a
    /// create whose outcome is unknown (a 5xx, a lost answer, a timeout) is never sent again
    /// before `lookup` has said the object does not exist.
    async fn create_once<C, CF, L, LF>(
        &self,
        operation: &'static str,
        create: C,
        lookup: L,
    ) -> Result<Created>
    where
        C: Fn() -> CF,
        CF: std::future::Future<Output = std::result::Result<Created, CallError>>,
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<Option<Created>>>,
    {
        let retry = self.api.retry;
        let mut attempt = 0;
        loop {
            let err = match create().await {
                Ok(created) => return Ok(created),
                Err(e) => e,
            };
            let last = attempt + 1 >= retry.attempts || !err.retryable;
            if !last {
                tokio::time::sleep(retry.delay(attempt)).await;
            }
            attempt += 1;
            if err.outcome == Outcome::Unknown {
                // It may have been created: look before creating again.
                match lookup().await {
                    Ok(Some(found)) => {
                        tracing::info!(operation, id = %found.id, "found after an unanswered create; not creating again");
                        return Ok(found);
                    }
                    Ok(None) => {}
                    Err(lookup_err) if last => {
                        tracing::warn!(operation, error = %lookup_err, "the check after an unanswered create failed");
                    }
                    Err(lookup_err) => {
                        tracing::warn!(operation, error = %lookup_err, "the check after an unanswered create failed; not retrying");
                        return Err(err.into());
                    }
                }
            }
            if last {
                return Err(err.into());
            }
        }
    }
}

fn tags_of(t: Option<&HashMap<String, String>>) -> Tags {
    t.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn tags_model(tags: &Tags) -> t::TagsModel {
    t::TagsModel::builder()
        .set_tags(Some(tags.clone().into_iter().collect()))
        .build()
}

/// The list calls run as tasks of their own, so that decoding several answers (the SDK's
/// and the conversion to the model) uses every core rather than the one thread polling the
/// caller's future.
fn spawned<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let task = tokio::spawn(work);
    async move {
        match task.await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Every page of a list, in order: `fetch(token)` sends one request and returns its items
/// and the next page's token.
async fn all_pages<T, Fut>(mut fetch: impl FnMut(Option<String>) -> Fut) -> Result<Vec<T>>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = fetch(token).await?;
        out.extend(items);
        token = next;
        if token.is_none() {
            return Ok(out);
        }
    }
}

impl SdkPinpoint {
    async fn list_apps_here(&self) -> Result<Vec<LiveApp>> {
        let api = &self.api;
        all_pages(|token| async move {
            let page = api
                .call("GetApps", Class::Other, || {
                    api.client
                        .get_apps()
                        .page_size(PAGE)
                        .set_token(token.clone())
                        .send()
                })
                .await?;
            let Some(resp) = page.applications_response else {
                return Ok((Vec::new(), None));
            };
            let apps = resp.item.into_iter().flatten().map(|a| LiveApp {
                tags: tags_of(a.tags.as_ref()),
                id: a.id.unwrap_or_default(),
                name: a.name.unwrap_or_default(),
                arn: a.arn.unwrap_or_default(),
                creation_date: a.creation_date.unwrap_or_default(),
            });
            Ok((apps.collect(), resp.next_token))
        })
        .await
    }

    async fn list_segments_here(&self, app: &str) -> Result<Vec<SegmentResponse>> {
        let api = &self.api;
        all_pages(|token| async move {
            let page = api
                .call("GetSegments", Class::Other, || {
                    api.client
                        .get_segments()
                        .application_id(app)
                        .page_size(PAGE)
                        .set_token(token.clone())
                        .send()
                })
                .await?;
            let Some(resp) = page.segments_response else {
                return Ok((Vec::new(), None));
            };
            let mut segments = Vec::new();
            for s in resp.item.into_iter().flatten() {
                segments.push(convert::segment_response(s)?);
            }
            Ok((segments, resp.next_token))
        })
        .await
    }

    async fn list_campaigns_here(&self, app: &str) -> Result<Vec<LiveCampaign>> {
        let api = &self.api;
        all_pages(|token| async move {
            let page = api
                .call("GetCampaigns", Class::Other, || {
                    api.client
                        .get_campaigns()
                        .application_id(app)
                        .page_size(PAGE)
                        .set_token(token.clone())
                        .send()
                })
                .await?;
            let Some(resp) = page.campaigns_response else {
                return Ok((Vec::new(), None));
            };
            let campaigns = resp.item.into_iter().flatten().map(|c| LiveCampaign {
                status: c
                    .state
                    .as_ref()
                    .and_then(|s| s.campaign_status.as_ref())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                id: c.id.unwrap_or_default(),
                name: c.name.unwrap_or_default(),
                segment_id: c.segment_id.unwrap_or_default(),
            });
            Ok((campaigns.collect(), resp.next_token))
        })
        .await
    }

    async fn list_journeys_here(&self, app: &str) -> Result<Vec<LiveJourney>> {
        let api = &self.api;
        all_pages(|token| async move {
            let page = api
                .call("ListJourneys", Class::Other, || {
                    api.client
                        .list_journeys()
                        .application_id(app)
                        .page_size(PAGE)
                        .set_token(token.clone())
                        .send()
                })
                .await?;
            let Some(resp) = page.journeys_response else {
                return Ok((Vec::new(), None));
            };
            let journeys = resp.item.into_iter().flatten().map(|j| LiveJourney {
                state: j
                    .state
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                segment_ids: convert::journey_segment_ids(&j),
                id: j.id.unwrap_or_default(),
                name: j.name.unwrap_or_default(),
            });
            Ok((journeys.collect(), resp.next_token))
        })
        .await
    }
}

impl Pinpoint for SdkPinpoint {
    async fn list_apps(&self) -> Result<Vec<LiveApp>> {
        let this = self.clone();
        spawned(async move { this.list_apps_here().await }).await
    }

    async fn list_segments(&self, app: &str) -> Result<Vec<SegmentResponse>> {
        let (this, app) = (self.clone(), app.to_string());
        spawned(async move { this.list_segments_here(&app).await }).await
    }

    async fn list_campaigns(&self, app: &str) -> Result<Vec<LiveCampaign>> {
        let (this, app) = (self.clone(), app.to_string());
        spawned(async move { this.list_campaigns_here(&app).await }).await
    }

    async fn list_journeys(&self, app: &str) -> Result<Vec<LiveJourney>> {
        let (this, app) = (self.clone(), app.to_string());
        spawned(async move { this.list_journeys_here(&app).await }).await
    }

    async fn list_tags(&self, arn: &str) -> Result<Tags> {
        let api = &self.api;
        let out = api
            .call("ListTagsForResource", Class::Other, || {
                api.client.list_tags_for_resource().resource_arn(arn).send()
            })
            .await?;
        Ok(tags_of(
            out.tags_model.as_ref().and_then(|m| m.tags.as_ref()),
        ))
    }

    async fn create_app(&self, name: &str, tags: &Tags, claim: &Claim) -> Result<Created> {
        let api = &self.api;
        let req = t::CreateApplicationRequest::builder()
            .name(name)
            .set_tags(Some(tags.clone().into_iter().collect()))
            .build();
        let create = || async {
            let out = api
                .once("CreateApp", Class::Other, || {
                    api.client
                        .create_app()
                        .create_application_request(req.clone())
                        .send()
                })
                .await?;
            let app = out.application_response;
            Ok(Created {
                id: app.as_ref().and_then(|a| a.id.clone()).unwrap_or_default(),
                arn: app.as_ref().and_then(|a| a.arn.clone()).unwrap_or_default(),
                version: 0,
            })
        };
        let lookup = || async {
            let apps = self.list_apps().await?;
            let mut mine: Vec<&LiveApp> = apps
                .iter()
                .filter(|a| managed_name(Some(&a.tags), &claim.owner) == Some(claim.name.as_str()))
                .collect();
            mine.sort_by(|a, b| {
                claim_order(&a.creation_date, &a.id).cmp(&claim_order(&b.creation_date, &b.id))
            });
            Ok(mine.first().map(|a| Created {
                id: a.id.clone(),
                arn: a.arn.clone(),
                version: 0,
            }))
        };
        self.create_once("CreateApp", create, lookup).await
    }

    async fn create_segment(
        &self,
        app: &str,
        def: &WriteSegmentRequest,
        claim: &Claim,
    ) -> Result<Created> {
        let api = &self.api;
        let body = convert::write_request(def);
        let create = || async {
            let out = api
                .once("CreateSegment", Class::SegmentWrite, || {
                    api.client
                        .create_segment()
                        .application_id(app)
                        .write_segment_request(body.clone())
                        .send()
                })
                .await?;
            let s = out.segment_response;
            Ok(Created {
                id: s.as_ref().and_then(|s| s.id.clone()).unwrap_or_default(),
                arn: s.as_ref().and_then(|s| s.arn.clone()).unwrap_or_default(),
                version: s.as_ref().and_then(|s| s.version).unwrap_or(1),
            })
        };
        let lookup = || async {
            let segments = self.list_segments(app).await?;
            let mut mine: Vec<&SegmentResponse> = segments
                .iter()
                .filter(|s| {
                    managed_name(s.tags.as_ref(), &claim.owner) == Some(claim.name.as_str())
                })
                .collect();
            mine.sort_by(|a, b| {
                claim_order(&a.creation_date, &a.id).cmp(&claim_order(&b.creation_date, &b.id))
            });
            Ok(mine.first().map(|s| Created {
                id: s.id.clone(),
                arn: s.arn.clone(),
                version: s.version,
            }))
        };
        self.create_once("CreateSegment", create, lookup).await
    }

    async fn update_segment(&self, app: &str, id: &str, def: &WriteSegmentRequest) -> Result<i32> {
        let api = &self.api;
        let body = convert::write_request(def);
        let out = api
            .call("UpdateSegment", Class::SegmentWrite, || {
                api.client
                    .update_segment()
                    .application_id(app)
                    .segment_id(id)
                    .write_segment_request(body.clone())
                    .send()
            })
            .await?;
        Ok(out
            .segment_response
            .and_then(|s| s.version)
            .unwrap_or_default())
    }

    async fn delete_segment(&self, app: &str, id: &str) -> Result<Deleted> {
        let api = &self.api;
        match api
            .call("DeleteSegment", Class::SegmentWrite, || {
                api.client
                    .delete_segment()
                    .application_id(app)
                    .segment_id(id)
                    .send()
            })
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_app(&self, id: &str) -> Result<Deleted> {
        let api = &self.api;
        match api
            .call("DeleteApp", Class::Other, || {
                api.client.delete_app().application_id(id).send()
            })
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e.into()),
        }
    }

    async fn tag(&self, arn: &str, tags: &Tags) -> Result<()> {
        let api = &self.api;
        let model = tags_model(tags);
        api.call("TagResource", Class::Other, || {
            api.client
                .tag_resource()
                .resource_arn(arn)
                .tags_model(model.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<()> {
        let api = &self.api;
        api.call("UntagResource", Class::Other, || {
            api.client
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
        })
        .await?;
        Ok(())
    }

    async fn import(
        &self,
        app: &str,
        req: &super::ImportRequest,
        progress: super::ImportProgress<'_>,
    ) -> Result<super::ImportOutcome> {
        let api = &self.api;
        let same = |j: &t::ImportJobResponse| {
            j.definition().is_some_and(|d| {
                d.s3_url() == Some(req.url.as_str())
                    && (d.segment_id() == req.segment_id.as_deref()
                        || (req.segment_id.is_none()
                            && d.segment_name() == req.segment_name.as_deref()))
            })
        };
        let jobs = api
            .call("GetImportJobs", Class::Other, || {
                api.client
                    .get_import_jobs()
                    .application_id(app)
                    .page_size("100")
                    .send()
            })
            .await?
            .import_jobs_response
            .map(|r| r.item().to_vec())
            .unwrap_or_default();
        // A job an interrupted apply started, still running: wait for it.
        let running = jobs
            .iter()
            .find(|j| {
                same(j)
                    && !matches!(
                        j.job_status(),
                        Some(t::JobStatus::Completed | t::JobStatus::Failed)
                    )
            })
            .and_then(|j| j.id().map(String::from));
        // Or one that ended after that apply stopped waiting, before it could tag the new
        // segment: the newest job of this source (jobs are listed newest first), completed,
        // whose segment is there and still unmanaged. Its outcome is this step's; a second
        // job would make a second segment.
        let running = match running {
            Some(id) => Some(id),
            None if req.segment_id.is_none() => {
                self.finished_untagged(app, jobs.iter().find(|j| same(j)))
                    .await?
            }
            None => None,
        };
        let job_id = match running {
            Some(id) => id,
            None => {
                let request = t::ImportJobRequest::builder()
                    .s3_url(&req.url)
                    .format(t::Format::from(req.format.as_str()))
                    .role_arn(&req.role_arn)
                    .set_external_id(req.external_id.clone())
                    .register_endpoints(req.register_endpoints)
                    .define_segment(req.segment_id.is_none())
                    .set_segment_id(req.segment_id.clone())
                    .set_segment_name(req.segment_name.clone())
                    .build();
                api.call("CreateImportJob", Class::SegmentWrite, || {
                    api.client
                        .create_import_job()
                        .application_id(app)
                        .import_job_request(request.clone())
                        .send()
                })
                .await?
                .import_job_response
                .and_then(|r| r.id)
                .unwrap_or_default()
            }
        };
        // Polled every 100 ms at first, then less often, at most every 2 s.
        let poll = crate::retry::Backoff {
            base: std::time::Duration::from_millis(100),
            cap: std::time::Duration::from_secs(2),
            jitter: crate::retry::Jitter::None,
        };
        let mut polls = 0u32;
        loop {
            let job = api
                .call("GetImportJob", Class::Other, || {
                    api.client
                        .get_import_job()
                        .application_id(app)
                        .job_id(&job_id)
                        .send()
                })
                .await?
                .import_job_response
                .unwrap_or_else(|| t::ImportJobResponse::builder().build());
            let processed = job.total_processed().unwrap_or(0).max(0) as u64;
            match job.job_status() {
                Some(t::JobStatus::Completed | t::JobStatus::Failed) => {
                    return Ok(super::ImportOutcome {
                        completed: job.job_status() == Some(&t::JobStatus::Completed),
                        segment_id: job
                            .definition()
                            .and_then(|d| d.segment_id())
                            .map(String::from),
                        processed,
                        rejected: job.total_failures().unwrap_or(0).max(0) as u64,
                        failures: job.failures().to_vec(),
                        job_id,
                    })
                }
                _ => progress(processed),
            }
            tokio::time::sleep(poll.delay(polls)).await;
            polls = polls.saturating_add(1);
        }
    }
}

impl SdkPinpoint {
    /// The id of `job` if it completed and made a segment that exists and no segmentctl
    /// owns yet (an apply that started it stopped waiting before tagging).
    async fn finished_untagged(
        &self,
        app: &str,
        job: Option<&t::ImportJobResponse>,
    ) -> Result<Option<String>> {
        let Some(job) = job.filter(|j| j.job_status() == Some(&t::JobStatus::Completed)) else {
            return Ok(None);
        };
        let Some(segment) = job.definition().and_then(|d| d.segment_id()) else {
            return Ok(None);
        };
        let unmanaged = self.list_segments(app).await?.iter().any(|s| {
            s.id == segment
                && s.tags
                    .as_ref()
                    .is_none_or(|t| !t.contains_key(crate::TAG_MANAGED_BY))
        });
        Ok(unmanaged.then(|| job.id().map(String::from)).flatten())
    }
}

impl From<PinpointError> for CallError {
    /// For callers that report every failure as a call failure.
    fn from(e: PinpointError) -> Self {
        match e {
            PinpointError::Call(c) => c,
            PinpointError::Unrepresentable(u) => CallError {
                operation: "decode",
                code: "unrepresentable".into(),
                status: None,
                message: u.to_string(),
                outcome: Outcome::NotApplied,
                retryable: false,
            },
        }
    }
}
