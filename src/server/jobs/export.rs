//! Export jobs: the members of a segment (an IMPORT segment's imported endpoints, or the
//! stored endpoints a DIMENSIONAL segment matches, evaluated by [`crate::audience::evaluate`]),
//! or every endpoint, written under `S3UrlPrefix` as gzip newline-delimited EndpointResponse
//! objects, `<JobId>/part-00000.gz` onward.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;

use serde_json::Value;

use super::{reset_counters, set, Jobs};
use crate::server::error::ApiError;
use crate::server::objects;
use crate::server::store::Store;
use crate::text::now_iso;

/// Endpoints per export piece.
const PIECE_ENDPOINTS: usize = 100_000;
/// Compressed bytes per export piece, at most (about): a piece of large endpoints closes early.
const PIECE_BYTES: u64 = 64 * 1024 * 1024;

impl Jobs {
    pub(super) async fn export(&self, app: &str, job: &mut Value) -> Result<(), String> {
        reset_counters(job);
        set(job, "JobStatus", "PROCESSING");
        self.blocking_save(app, job.clone()).await?;
        let def = job["Definition"].clone();
        let prefix = objects::parse(def["S3UrlPrefix"].as_str().unwrap_or_default())?;
        let job_id = job["Id"].as_str().unwrap_or_default().to_string();
        let segment = def["SegmentId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from);
        let version = def["SegmentVersion"].as_i64().map(|v| v as i32);
        let store = self.store.clone();
        let app_id = app.to_string();
        let objects = self.objects.clone();
        let handle = tokio::runtime::Handle::current();
        // Evaluation is CPU work: on a blocking thread, writing each piece as it fills.
        let (pieces, written) = tokio::task::spawn_blocking(move || {
            export_scan(
                &store,
                &app_id,
                segment.as_deref(),
                version,
                PIECE,
                |n, file| {
                    let name = format!("{job_id}/part-{n:05}.gz");
                    handle
                        .block_on(objects.put(&prefix, &name, file))
                        .map(|_| ())
                },
            )
        })
        .await
        .map_err(|e| e.to_string())??;
        set(job, "TotalPieces", pieces);
        set(job, "CompletedPieces", pieces);
        set(job, "TotalProcessed", written);
        set(job, "JobStatus", "COMPLETED");
        set(job, "CompletionDate", now_iso());
        self.blocking_save(app, job.clone()).await
    }
}

/// How large an export piece grows before the next begins.
#[derive(Debug, Clone, Copy)]
pub struct PieceLimit {
    pub endpoints: usize,
    /// Compressed bytes (checked every 256 endpoints).
    pub bytes: u64,
}

/// Pinpoint's 100,000 endpoints a piece, and at most about 64 MiB compressed.
pub const PIECE: PieceLimit = PieceLimit {
    endpoints: PIECE_ENDPOINTS,
    bytes: PIECE_BYTES,
};

/// The endpoints an export writes, through `put(piece number, gzip file)`: `(pieces,
/// endpoints)`. Each piece is compressed into an unnamed temporary file, never held in
/// memory, and closed at `limit`.
pub fn export_scan(
    store: &Store,
    app: &str,
    segment: Option<&str>,
    version: Option<i32>,
    limit: PieceLimit,
    put: impl FnMut(u64, std::fs::File) -> Result<(), String>,
) -> Result<(u64, u64), String> {
    let mut out = Pieces::new(limit, put)?;
    let target = segment
        .map(|s| store.segment_at(app, s, version))
        .transpose()
        .map_err(err)?;
    match &target {
        Some(seg) if seg.is_import() => {
            let mut after = String::new();
            loop {
                let rows = store
                    .members_after(app, &seg.id, seg.version, &after, 10_000)
                    .map_err(err)?;
                let Some(last) = rows.last().map(|r| r.0.clone()) else {
                    break;
                };
                for (_, body) in &rows {
                    out.emit(body)?;
                }
                after = last;
            }
        }
        _ => matching(store, app, target.as_ref(), &mut out)?,
    }
    out.finish()
}

fn err(e: ApiError) -> String {
    e.message
}

/// Emits the stored endpoints `target` (a DIMENSIONAL segment) matches, or every one.
fn matching(
    store: &Store,
    app: &str,
    target: Option<&crate::model::SegmentResponse>,
    out: &mut Pieces<impl FnMut(u64, std::fs::File) -> Result<(), String>>,
) -> Result<(), String> {
    use crate::audience::evaluate::{Catalog, Members, Program};
    let all = store.all_segments(app).map_err(err)?;
    let defs: BTreeMap<String, crate::model::WriteSegmentRequest> = all
        .iter()
        .filter(|s| !s.is_import())
        .map(|s| (s.id.clone(), s.definition()))
        .collect();
    let mut catalog = Catalog::of(&defs);
    catalog.key_of_id = all.iter().map(|s| (s.id.clone(), s.id.clone())).collect();
    for s in all.iter().filter(|s| s.is_import()) {
        let ids: HashSet<Box<str>> = store
            .member_ids(app, &s.id, s.version)
            .map_err(err)?
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let members = Members {
            ids,
            users: HashSet::new(),
        };
        catalog.imported.insert(s.id.clone(), Arc::new(members));
    }
    // The segment at the version asked for, under a key of its own.
    let target_def = target.map(|s| s.definition());
    if let Some(d) = &target_def {
        catalog.segments.insert("\u{0}target".into(), d);
    }
    let mut program = Program::new(time::OffsetDateTime::now_utc());
    let node = target_def
        .as_ref()
        .map(|_| program.add(0, &catalog, "\u{0}target"));
    program.refuse_too_deep()?;
    let mut matched = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.endpoints_after(app, after, 10_000).map_err(err)?;
        let mut record = program.record();
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(());
        };
        for (_, body) in &rows {
            let keep = node.is_none_or(|n| {
                program.read(body, &mut record).is_ok() && {
                    program.run(&record, &mut matched);
                    matched[n]
                }
            });
            if keep {
                out.emit(body)?;
            }
        }
        after = last;
    }
}

/// A piece being compressed into its temporary file.
type Gz = flate2::write::GzEncoder<std::fs::File>;

/// The pieces of an export: the one being written, and how many went before.
pub(super) struct Pieces<P> {
    limit: PieceLimit,
    put: P,
    gz: Gz,
    pieces: u64,
    written: u64,
    in_piece: usize,
    /// A first line each piece starts with (a CSV header).
    header: Option<String>,
}

impl<P: FnMut(u64, std::fs::File) -> Result<(), String>> Pieces<P> {
    pub(super) fn new(limit: PieceLimit, put: P) -> Result<Self, String> {
        Ok(Self {
            limit,
            put,
            gz: piece()?,
            pieces: 0,
            written: 0,
            in_piece: 0,
            header: None,
        })
    }

    /// As [`Pieces::new`], each piece starting with `header` (a line, without its end).
    pub(super) fn with_header(limit: PieceLimit, put: P, header: String) -> Result<Self, String> {
        let mut p = Self::new(limit, put)?;
        p.start_piece(&header)?;
        p.header = Some(header);
        Ok(p)
    }

    fn start_piece(&mut self, header: &str) -> Result<(), String> {
        self.gz
            .write_all(header.as_bytes())
            .and_then(|_| self.gz.write_all(b"\n"))
            .map_err(|e| e.to_string())
    }

    /// Writes one endpoint; puts the piece when it is full.
    pub(super) fn emit(&mut self, line: &str) -> Result<(), String> {
        self.gz
            .write_all(line.as_bytes())
            .and_then(|_| self.gz.write_all(b"\n"))
            .map_err(|e| e.to_string())?;
        self.written += 1;
        self.in_piece += 1;
        let large = self.in_piece.is_multiple_of(256)
            && self.gz.get_ref().metadata().map_or(0, |m| m.len()) >= self.limit.bytes;
        if self.in_piece >= self.limit.endpoints || large {
            let full = std::mem::replace(&mut self.gz, piece()?);
            (self.put)(self.pieces, finish(full)?)?;
            self.pieces += 1;
            self.in_piece = 0;
            if let Some(h) = self.header.take() {
                self.start_piece(&h)?;
                self.header = Some(h);
            }
        }
        Ok(())
    }

    /// Puts the last piece (an empty one when there was nothing to write): `(pieces,
    /// endpoints)`.
    pub(super) fn finish(mut self) -> Result<(u64, u64), String> {
        if self.in_piece > 0 || self.pieces == 0 {
            (self.put)(self.pieces, finish(self.gz)?)?;
            self.pieces += 1;
        }
        Ok((self.pieces, self.written))
    }
}

fn piece() -> Result<Gz, String> {
    tempfile::tempfile()
        .map(|f| flate2::write::GzEncoder::new(f, flate2::Compression::fast()))
        .map_err(|e| format!("cannot make a temporary file for a piece: {e}"))
}

/// The piece's file, complete and read from its start.
fn finish(gz: Gz) -> Result<std::fs::File, String> {
    use std::io::Seek as _;
    let mut f = gz.finish().map_err(|e| e.to_string())?;
    f.rewind().map_err(|e| e.to_string())?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::endpoint::Endpoint;
    use serde_json::json;

    #[test]
    fn an_export_piece_closes_at_its_byte_limit_and_every_endpoint_lands_once() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(
            &crate::server::store::DataSource::Sqlite(dir.path().join("p.db")),
            "us-east-1",
            "000000000000",
            crate::server::store::pg::PgSettings::new(1),
        )
        .unwrap();
        let app = store.create_app("big", &Default::default()).unwrap().id;
        // Endpoints of about 4 KB that do not compress well.
        let mut rng = fastrand::Rng::with_seed(7);
        let items: Vec<(String, Endpoint)> = (0..1500)
            .map(|i| {
                let noise: String = (0..4000).map(|_| rng.alphanumeric()).collect();
                let e: Endpoint = serde_json::from_value(json!({
                    "ChannelType": "SMS",
                    "Address": format!("+1555{i:07}"),
                    "Attributes": {"noise": [noise]},
                }))
                .unwrap();
                (format!("e{i}"), e)
            })
            .collect();
        store
            .update_endpoints(&app, items, |i| format!("Item[{i}]"), "r")
            .unwrap();
        let mut sizes = Vec::new();
        let mut ids = HashSet::new();
        let limit = PieceLimit {
            endpoints: 1000,
            bytes: 1024 * 1024,
        };
        let (pieces, written) = export_scan(&store, &app, None, None, limit, |n, mut file| {
            assert_eq!(n, sizes.len() as u64);
            let mut gz = Vec::new();
            file.read_to_end(&mut gz).unwrap();
            sizes.push(gz.len() as u64);
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                assert!(ids.insert(v["Id"].as_str().unwrap().to_string()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(written, 1500);
        assert_eq!(ids.len(), 1500, "every endpoint once");
        assert_eq!(pieces as usize, sizes.len());
        assert!(
            pieces >= 3,
            "4.5 MB compressed in pieces of about 1 MiB: {sizes:?}"
        );
        for s in &sizes[..sizes.len() - 1] {
            // Closed at the first check (every 256 endpoints, under 1 MiB here) past the limit.
            assert!(*s >= limit.bytes && *s < 2 * limit.bytes, "{sizes:?}");
        }
    }
}
