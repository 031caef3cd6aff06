//! Customer Profiles' jobs: segment estimates (how many of a domain's profiles a
//! `SegmentQuery` holds) and segment snapshots (the profiles a definition holds, written as
//! gzip JSON lines under `DestinationUri`), both by the audience evaluator over the stored
//! profiles, page by page.
//!
//! Each is a job like an import (leased, run again from its start by whichever server
//! claims it when its server stops), so one over a large domain never holds a request
//! open and never strands.

use serde_json::Value;
use time::OffsetDateTime;

use super::export::{Pieces, PIECE};
use super::{retrying, set, Jobs};
use crate::audience::evaluate::profiles::DefinitionCatalog;
use crate::audience::evaluate::{Program, BATCH};
use crate::model::profiles::SegmentGroups;
use crate::server::objects;
use crate::server::store::Store;

/// Profiles read per page.
const PAGE: usize = 10_000;

/// What a scan evaluates: criteria of their own, or a stored definition by name.
enum Target<'a> {
    Query(&'a SegmentGroups),
    Definition(&'a str),
}

fn domain_of(app: &str) -> Result<String, String> {
    app.strip_prefix("domains/")
        .map(str::to_string)
        .ok_or_else(|| "a Customer Profiles job belongs to a domain".to_string())
}

impl Jobs {
    pub(super) async fn estimate(&self, app: &str, job: &mut Value) -> Result<(), String> {
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        let domain = domain_of(app)?;
        let query: SegmentGroups = serde_json::from_value(job["SegmentQuery"].clone())
            .map_err(|e| format!("the stored SegmentQuery does not read back: {e}"))?;
        let store = self.store.clone();
        let count = tokio::task::spawn_blocking(move || {
            scan(&store, &domain, Target::Query(&query), |_| Ok(()))
        })
        .await
        .map_err(|e| e.to_string())??;
        set(job, "JobStatus", "COMPLETED");
        set(job, "Estimate", count.to_string());
        self.blocking_save(app, job.clone()).await
    }

    pub(super) async fn snapshot(&self, app: &str, job: &mut Value) -> Result<(), String> {
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        let domain = domain_of(app)?;
        let name = job["SegmentDefinitionName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let prefix = objects::parse(job["DestinationUri"].as_str().unwrap_or_default())?;
        let snapshot = job["Id"].as_str().unwrap_or_default().to_string();
        let store = self.store.clone();
        let objects = self.objects.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut pieces = Pieces::new(PIECE, |n, file| {
                let key = format!("{snapshot}/part-{n:05}.jsonl.gz");
                handle
                    .block_on(objects.put(&prefix, &key, file))
                    .map(|_| ())
            })?;
            scan(&store, &domain, Target::Definition(&name), |body| {
                pieces.emit(body)
            })?;
            pieces.finish().map(|_| ())
        })
        .await
        .map_err(|e| e.to_string())??;
        set(job, "JobStatus", "COMPLETED");
        self.blocking_save(app, job.clone()).await
    }
}

/// Runs `target` over the domain's profiles: calls `matched` with each one it holds, and
/// returns how many.
fn scan(
    store: &Store,
    domain: &str,
    target: Target<'_>,
    mut matched: impl FnMut(&str) -> Result<(), String>,
) -> Result<u64, String> {
    let definitions = retrying(|| store.definition_catalog(domain)).map_err(|e| e.message)?;
    let catalog = DefinitionCatalog {
        definitions: definitions.iter().map(|(n, g)| (n.clone(), g)).collect(),
    };
    let mut program = Program::for_profiles(OffsetDateTime::now_utc());
    let node = match target {
        Target::Query(q) => program.add_query(0, &catalog, q),
        Target::Definition(name) => {
            if !catalog.definitions.contains_key(name) {
                return Err(format!("segment definition {name} no longer exists"));
            }
            program.add_definition(0, &catalog, name)
        }
    };
    let mut after = 0;
    let mut n = 0u64;
    let mut out = Vec::new();
    loop {
        let page = retrying(|| store.profiles_after(domain, after, PAGE)).map_err(|e| e.message)?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        after = *last;
        for chunk in page.chunks(BATCH) {
            let mut records = Vec::with_capacity(chunk.len());
            for (_, body) in chunk {
                let mut record = program.record();
                program
                    .read(body, &mut record)
                    .map_err(|e| format!("a stored profile does not read as one: {e}"))?;
                records.push(record);
            }
            program.run_batch(&records, &mut out);
            let hits = out[node];
            n += u64::from(hits.count_ones());
            for (i, (_, body)) in chunk.iter().enumerate() {
                if hits & (1 << i) != 0 {
                    matched(body)?;
                }
            }
        }
    }
}
