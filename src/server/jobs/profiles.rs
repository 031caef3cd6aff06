//! Customer Profiles' jobs: segment estimates (how many of a domain's profiles a
//! `SegmentQuery` holds) and segment snapshots (the profiles a definition holds, written as
//! gzip JSON lines or CSV under `DestinationUri`), both by the audience evaluator over the
//! stored profiles, page by page.
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
        let csv = job["DataFormat"].as_str() == Some("CSV");
        let store = self.store.clone();
        let objects = self.objects.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let put = |n: u64, file| {
                let ext = if csv { "csv" } else { "jsonl" };
                let key = format!("{snapshot}/part-{n:05}.{ext}.gz");
                handle
                    .block_on(objects.put(&prefix, &key, file))
                    .map(|_| ())
            };
            if !csv {
                let mut pieces = Pieces::new(PIECE, put)?;
                scan(&store, &domain, Target::Definition(&name), |body| {
                    pieces.emit(body)
                })?;
                return pieces.finish().map(|_| ());
            }
            // CSV: the columns are the profile's fields and every attribute a member has,
            // found by a first pass (the members are read twice, never held).
            let mut keys = std::collections::BTreeSet::new();
            scan(&store, &domain, Target::Definition(&name), |body| {
                if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(body) {
                    if let Some(Value::Object(a)) = p.get("Attributes") {
                        keys.extend(a.keys().cloned());
                    }
                }
                Ok(())
            })?;
            let columns = csv_columns(&keys);
            let header = csv_line(columns.iter().map(String::as_str));
            let mut pieces = Pieces::with_header(PIECE, put, header)?;
            scan(&store, &domain, Target::Definition(&name), |body| {
                let p: Value = serde_json::from_str(body)
                    .map_err(|e| format!("a stored profile does not read back: {e}"))?;
                let cells: Vec<&str> = columns
                    .iter()
                    .map(|c| {
                        c.split_once('.')
                            .map_or(&p[c.as_str()], |(a, b)| &p[a][b])
                            .as_str()
                            .unwrap_or("")
                    })
                    .collect();
                pieces.emit(&csv_line(cells.into_iter()))
            })?;
            pieces.finish().map(|_| ())
        })
        .await
        .map_err(|e| e.to_string())??;
        set(job, "JobStatus", "COMPLETED");
        self.blocking_save(app, job.clone()).await
    }
}

/// A CSV snapshot's columns: the profile's fields, its addresses' parts (dotted, as
/// Pinpoint's CSV imports name them), then `Attributes.<key>` for each key, sorted.
fn csv_columns(attribute_keys: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut c: Vec<String> = [
        "ProfileId",
        "AccountNumber",
        "AdditionalInformation",
        "PartyType",
        "BusinessName",
        "FirstName",
        "MiddleName",
        "LastName",
        "BirthDate",
        "Gender",
        "PhoneNumber",
        "MobilePhoneNumber",
        "HomePhoneNumber",
        "BusinessPhoneNumber",
        "EmailAddress",
        "PersonalEmailAddress",
        "BusinessEmailAddress",
        "PartyTypeString",
        "GenderString",
        "ProfileType",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for address in [
        "Address",
        "ShippingAddress",
        "MailingAddress",
        "BillingAddress",
    ] {
        for part in [
            "Address1",
            "Address2",
            "Address3",
            "Address4",
            "City",
            "County",
            "State",
            "Province",
            "Country",
            "PostalCode",
        ] {
            c.push(format!("{address}.{part}"));
        }
    }
    c.extend(attribute_keys.iter().map(|k| format!("Attributes.{k}")));
    c
}

/// One CSV line (RFC 4180 quoting, by csv-core's writer), without its end.
fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    use csv_core::WriteResult;
    let mut w = csv_core::Writer::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for (i, field) in fields.enumerate() {
        if i > 0 {
            let (_, n) = w.delimiter(&mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        let mut input = field.as_bytes();
        loop {
            let (r, read, wrote) = w.field(input, &mut buf);
            out.extend_from_slice(&buf[..wrote]);
            input = &input[read..];
            if r == WriteResult::InputEmpty {
                break;
            }
        }
    }
    let (_, n) = w.finish(&mut buf);
    out.extend_from_slice(&buf[..n]);
    String::from_utf8(out).unwrap_or_default()
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
    program.refuse_too_deep()?;
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
