//! [`Pinpoint`] in memory: the same contract as the server (ids, ARNs, versions counting
//! from 1, tags ignored on update, base segments that must exist), with no I/O, so the real
//! executor and the daemon's reconcile step run in unit and property tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Claim, Created, Deleted, Pinpoint, PinpointError, Result};
use crate::model::{SegmentResponse, Tags, WriteSegmentRequest};
use crate::plan::live::{LiveApp, LiveCampaign, LiveJourney};
use crate::targets::pinpoint::pacing::{CallError, Outcome};

#[derive(Default)]
struct State {
    /// Creation order, for ids and creation dates that sort as they do on a server.
    clock: u64,
    apps: BTreeMap<String, LiveApp>,
    /// By application id, in creation order.
    segments: BTreeMap<String, Vec<SegmentResponse>>,
    campaigns: BTreeMap<String, Vec<LiveCampaign>>,
    journeys: BTreeMap<String, Vec<LiveJourney>>,
    /// Operations answered so far, by name.
    calls: BTreeMap<&'static str, u64>,
    /// How many of the next ListTagsForResource answers arrive late, and how late.
    slow_tag_reads: (u32, std::time::Duration),
}

/// The Segment API held in memory.
#[derive(Default)]
pub struct MemoryPinpoint {
    state: Mutex<State>,
}

const REGION_ACCOUNT: &str = "arn:aws:mobiletargeting:us-east-1:000000000000";

fn not_found(operation: &'static str, what: String) -> PinpointError {
    PinpointError::Call(CallError {
        operation,
        code: "NotFoundException".into(),
        status: Some(404),
        message: format!("NotFoundException: {what}"),
        outcome: Outcome::NotApplied,
        retryable: false,
    })
}

fn bad_request(operation: &'static str, what: String) -> PinpointError {
    PinpointError::Call(CallError {
        operation,
        code: "BadRequestException".into(),
        status: Some(400),
        message: format!("BadRequestException: {what}"),
        outcome: Outcome::NotApplied,
        retryable: false,
    })
}

impl State {
    fn tick(&mut self) -> (String, String) {
        self.clock += 1;
        let n = self.clock;
        (
            format!("{n:032x}"),
            format!(
                "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
                (n / 3_600_000) % 24,
                (n / 60_000) % 60,
                (n / 1000) % 60,
                n % 1000
            ),
        )
    }

    fn count(&mut self, op: &'static str) {
        *self.calls.entry(op).or_default() += 1;
    }

    fn check_bases(&self, app: &str, this: Option<&str>, def: &WriteSegmentRequest) -> Result<()> {
        let segments = self.segments.get(app).map(Vec::as_slice).unwrap_or(&[]);
        for r in def
            .segment_groups
            .iter()
            .flat_map(|g| g.groups.iter().flatten())
            .flat_map(|g| g.source_segments.iter().flatten())
        {
            let Some(id) = &r.id else {
                return Err(bad_request(
                    "WriteSegment",
                    format!("a base segment is not named by id: {r:?}"),
                ));
            };
            if Some(id.as_str()) == this || !segments.iter().any(|s| &s.id == id) {
                return Err(bad_request(
                    "WriteSegment",
                    format!("base segment {id} does not exist in application {app}"),
                ));
            }
        }
        Ok(())
    }

    fn tags_of(&mut self, arn: &str) -> Option<&mut Tags> {
        if let Some(app) = self.apps.values_mut().find(|a| a.arn == arn) {
            return Some(&mut app.tags);
        }
        self.segments
            .values_mut()
            .flatten()
            .find(|s| s.arn == arn)
            .map(|s| s.tags.get_or_insert_with(Tags::new))
    }
}

impl MemoryPinpoint {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Makes the next `count` ListTagsForResource answers arrive `delay` after the tags were
    /// read, as over a slow network or to a paused process.
    pub fn delay_tag_reads(&self, count: u32, delay: std::time::Duration) {
        self.with(|st| st.slow_tag_reads = (count, delay));
    }

    /// Adds an application, as someone else would (no claim).
    pub fn add_app(&self, name: &str, tags: Tags) -> String {
        let id = self.with(|st| st.tick().0);
        self.insert_app(&id, name, tags);
        id
    }

    /// Adds an application with a given id.
    pub fn insert_app(&self, id: &str, name: &str, tags: Tags) {
        let id = id.to_string();
        self.with(|st| {
            let (_, created) = st.tick();
            st.apps.insert(
                id.clone(),
                LiveApp {
                    arn: format!("{REGION_ACCOUNT}:apps/{id}"),
                    id: id.clone(),
                    name: name.to_string(),
                    tags,
                    creation_date: created,
                },
            );
        })
    }

    /// Adds a campaign using `segment`, in the given status.
    pub fn add_campaign(&self, app: &str, name: &str, segment: &str, status: &str) {
        self.with(|st| {
            let (id, _) = st.tick();
            st.campaigns
                .entry(app.to_string())
                .or_default()
                .push(LiveCampaign {
                    id,
                    name: name.to_string(),
                    segment_id: segment.to_string(),
                    status: status.to_string(),
                });
        })
    }

    /// Every segment of `app` as stored.
    pub fn segments(&self, app: &str) -> Vec<SegmentResponse> {
        self.with(|st| st.segments.get(app).cloned().unwrap_or_default())
    }

    /// How many times `operation` was answered.
    pub fn calls(&self, operation: &str) -> u64 {
        self.with(|st| st.calls.get(operation).copied().unwrap_or(0))
    }
}

impl Pinpoint for MemoryPinpoint {
    async fn list_apps(&self) -> Result<Vec<LiveApp>> {
        self.with(|st| {
            st.count("GetApps");
            let mut apps: Vec<LiveApp> = st.apps.values().cloned().collect();
            apps.sort_by(|a, b| a.creation_date.cmp(&b.creation_date));
            Ok(apps)
        })
    }

    async fn list_segments(&self, app: &str) -> Result<Vec<SegmentResponse>> {
        self.with(|st| {
            st.count("GetSegments");
            if !st.apps.contains_key(app) {
                return Err(not_found(
                    "GetSegments",
                    format!("Application {app} not found"),
                ));
            }
            Ok(st.segments.get(app).cloned().unwrap_or_default())
        })
    }

    async fn list_campaigns(&self, app: &str) -> Result<Vec<LiveCampaign>> {
        self.with(|st| {
            st.count("GetCampaigns");
            Ok(st.campaigns.get(app).cloned().unwrap_or_default())
        })
    }

    async fn list_journeys(&self, app: &str) -> Result<Vec<LiveJourney>> {
        self.with(|st| {
            st.count("ListJourneys");
            Ok(st.journeys.get(app).cloned().unwrap_or_default())
        })
    }

    async fn list_tags(&self, arn: &str) -> Result<Tags> {
        let (answer, delay) = self.with(|st| {
            st.count("ListTagsForResource");
            let answer = st
                .tags_of(arn)
                .map(|t| t.clone())
                .ok_or_else(|| not_found("ListTagsForResource", format!("{arn} not found")));
            let (left, delay) = &mut st.slow_tag_reads;
            let late = (*left > 0).then_some(*delay);
            *left = left.saturating_sub(1);
            (answer, late)
        });
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        answer
    }

    async fn create_app(&self, name: &str, tags: &Tags, _claim: &Claim) -> Result<Created> {
        let id = self.add_app(name, tags.clone());
        self.with(|st| {
            st.count("CreateApp");
            let arn = st.apps[&id].arn.clone();
            Ok(Created {
                id,
                arn,
                version: 0,
            })
        })
    }

    async fn create_segment(
        &self,
        app: &str,
        def: &WriteSegmentRequest,
        _claim: &Claim,
    ) -> Result<Created> {
        self.with(|st| {
            st.count("CreateSegment");
            if !st.apps.contains_key(app) {
                return Err(not_found(
                    "CreateSegment",
                    format!("Application {app} not found"),
                ));
            }
            st.check_bases(app, None, def)?;
            let (id, created) = st.tick();
            let arn = format!("{REGION_ACCOUNT}:apps/{app}/segments/{id}");
            st.segments
                .entry(app.to_string())
                .or_default()
                .push(SegmentResponse {
                    application_id: app.to_string(),
                    arn: arn.clone(),
                    creation_date: created.clone(),
                    dimensions: def.dimensions.clone(),
                    id: id.clone(),
                    last_modified_date: Some(created),
                    name: def.name.clone(),
                    segment_groups: def.segment_groups.clone(),
                    segment_type: "DIMENSIONAL".into(),
                    tags: def.tags.clone().filter(|t| !t.is_empty()),
                    version: 1,
                    import_definition: None,
                });
            Ok(Created {
                id,
                arn,
                version: 1,
            })
        })
    }

    async fn update_segment(&self, app: &str, id: &str, def: &WriteSegmentRequest) -> Result<i32> {
        self.with(|st| {
            st.count("UpdateSegment");
            st.check_bases(app, Some(id), def)?;
            let s = st
                .segments
                .get_mut(app)
                .and_then(|segs| segs.iter_mut().find(|s| s.id == id))
                .ok_or_else(|| not_found("UpdateSegment", format!("Segment {id} not found")))?;
            s.name = def.name.clone();
            s.dimensions = def.dimensions.clone();
            s.segment_groups = def.segment_groups.clone();
            s.version += 1;
            Ok(s.version)
        })
    }

    async fn delete_segment(&self, app: &str, id: &str) -> Result<Deleted> {
        self.with(|st| {
            st.count("DeleteSegment");
            let Some(segs) = st.segments.get_mut(app) else {
                return Ok(Deleted::AlreadyGone);
            };
            let before = segs.len();
            segs.retain(|s| s.id != id);
            Ok(if segs.len() < before {
                Deleted::Deleted
            } else {
                Deleted::AlreadyGone
            })
        })
    }

    async fn delete_app(&self, id: &str) -> Result<Deleted> {
        self.with(|st| {
            st.count("DeleteApp");
            st.segments.remove(id);
            Ok(if st.apps.remove(id).is_some() {
                Deleted::Deleted
            } else {
                Deleted::AlreadyGone
            })
        })
    }

    async fn tag(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.with(|st| {
            st.count("TagResource");
            let t = st
                .tags_of(arn)
                .ok_or_else(|| not_found("TagResource", format!("{arn} not found")))?;
            t.extend(tags.clone());
            Ok(())
        })
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.with(|st| {
            st.count("UntagResource");
            let t = st
                .tags_of(arn)
                .ok_or_else(|| not_found("UntagResource", format!("{arn} not found")))?;
            for k in keys {
                t.remove(k);
            }
            Ok(())
        })
    }

    async fn import(
        &self,
        app: &str,
        req: &super::ImportRequest,
        _progress: super::ImportProgress<'_>,
    ) -> Result<super::ImportOutcome> {
        self.with(|st| {
            st.count("CreateImportJob");
            if !st.apps.contains_key(app) {
                return Err(not_found(
                    "CreateImportJob",
                    format!("Application {app} not found"),
                ));
            }
            let def = crate::model::ImportDefinition {
                channel_counts: None,
                external_id: req.external_id.clone().unwrap_or_default(),
                format: req.format.clone(),
                role_arn: req.role_arn.clone(),
                s3_url: req.url.clone(),
                size: 0,
            };
            let (job_id, created) = st.tick();
            let id = match &req.segment_id {
                Some(id) => {
                    let s = st
                        .segments
                        .get_mut(app)
                        .and_then(|segs| segs.iter_mut().find(|s| &s.id == id))
                        .ok_or_else(|| {
                            not_found("CreateImportJob", format!("Segment {id} not found"))
                        })?;
                    s.version += 1;
                    if req.segment_name.is_some() {
                        s.name = req.segment_name.clone();
                    }
                    s.import_definition = Some(def);
                    id.clone()
                }
                None => {
                    let (id, _) = st.tick();
                    st.segments
                        .entry(app.to_string())
                        .or_default()
                        .push(SegmentResponse {
                            application_id: app.to_string(),
                            arn: format!("{REGION_ACCOUNT}:apps/{app}/segments/{id}"),
                            creation_date: created.clone(),
                            dimensions: None,
                            id: id.clone(),
                            last_modified_date: Some(created),
                            name: req.segment_name.clone(),
                            segment_groups: None,
                            segment_type: "IMPORT".into(),
                            tags: None,
                            version: 1,
                            import_definition: Some(def),
                        });
                    id
                }
            };
            Ok(super::ImportOutcome {
                job_id,
                completed: true,
                segment_id: Some(id),
                processed: 0,
                rejected: 0,
                failures: Vec::new(),
            })
        })
    }
}
