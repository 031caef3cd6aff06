//! Customer Profiles segment estimates: how many of a domain's profiles a `SegmentQuery`
//! holds, counted by the audience evaluator over the stored profiles, page by page.
//!
//! An estimate is a job like an import (leased, run again from its start by whichever
//! server claims it when its server stops), so one over a large domain never holds a
//! request open and never strands.

use serde_json::Value;
use time::OffsetDateTime;

use super::{retrying, set, Jobs};
use crate::audience::evaluate::profiles::DefinitionCatalog;
use crate::audience::evaluate::{Program, BATCH};
use crate::model::profiles::SegmentGroups;

/// Profiles read per page.
const PAGE: usize = 10_000;

impl Jobs {
    pub(super) async fn estimate(&self, app: &str, job: &mut Value) -> Result<(), String> {
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        let domain = app
            .strip_prefix("domains/")
            .ok_or("an estimate belongs to a domain")?
            .to_string();
        let query: SegmentGroups = serde_json::from_value(job["SegmentQuery"].clone())
            .map_err(|e| format!("the stored SegmentQuery does not read back: {e}"))?;
        let store = self.store.clone();
        let count = tokio::task::spawn_blocking(move || count(&store, &domain, &query))
            .await
            .map_err(|e| e.to_string())??;
        set(job, "JobStatus", "COMPLETED");
        set(job, "Estimate", count.to_string());
        self.blocking_save(app, job.clone()).await
    }
}

/// The domain's profiles the query holds.
fn count(
    store: &crate::server::store::Store,
    domain: &str,
    query: &SegmentGroups,
) -> Result<u64, String> {
    let definitions = retrying(|| store.definition_catalog(domain)).map_err(|e| e.message)?;
    let catalog = DefinitionCatalog {
        definitions: definitions.iter().map(|(n, g)| (n.clone(), g)).collect(),
    };
    let mut program = Program::for_profiles(OffsetDateTime::now_utc());
    let node = program.add_query(0, &catalog, query);
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
            n += u64::from(out[node].count_ones());
        }
    }
}
