//! Segments and their versions: every version kept, tags on the segment, base segments
//! checked to exist.

use super::sql::{params, Connection, OptionalExtension};

use super::{
    new_id, non_empty, paginate_bytes, segment_not_found, tags_from_json, tags_to_json, Listing,
    Page, Store, Tx,
};
use crate::model::{ImportDefinition, SegmentReference, SegmentResponse, WriteSegmentRequest};
use crate::server::error::ApiError;
use crate::text::now_iso;

/// A segment's version (`?3`, or its latest when NULL), with the segment's own columns.
///
/// The version is a value (the latest one by a subquery), not the joined row's column: a
/// plan PostgreSQL cached while the tables were small may then still take the version by
/// the primary key, never reading every version of the segment to keep one (GetSegment on
/// a segment updated 160,000 times took 36 ms, not 0.1, until the next ANALYZE; and each
/// read pipelined behind it on the shared connection waited too).
const SEGMENT_ROW: &str = "SELECT s.created, s.tags, s.version, v.version, v.modified, v.body
     FROM segments s JOIN segment_versions v ON v.app_id = s.app_id AND v.segment_id = s.id
     WHERE s.app_id = ?1 AND s.id = ?2
       AND v.version = COALESCE(?3, (SELECT version FROM segments WHERE app_id = ?1 AND id = ?2))";

/// What can change in a segment's GetSegment answer but its version's own columns (which
/// are never rewritten): its latest version, and its tags.
const SEGMENT_STAMP: &str = "SELECT version, tags FROM segments WHERE app_id = ?1 AND id = ?2";

/// A read's output on a shared connection, which is marked broken when the database was
/// unreachable (so that the next read makes a new one).
fn shared_read(
    conn: &mut super::pg::Pooled<'_>,
    out: Result<super::sql::Output, super::sql::DbError>,
) -> Result<super::sql::Output, ApiError> {
    out.map_err(|e| {
        if e.is_unavailable() {
            conn.broken();
        }
        e.into()
    })
}

/// The next version of segment `?2`, unless it is an IMPORT segment (its first version's
/// definition begins with `?3`, [`IMPORTED_PREFIX`]: a segment's kind never changes): its
/// row, locked until the transaction ends, and its own columns. (`next_version!("?6")`:
/// `?6` versions further.)
macro_rules! next_version {
    ($by:literal) => {
        concat!(
            "UPDATE segments SET version = version + ",
            $by,
            "
         WHERE app_id = ?1 AND id = ?2
           AND (SELECT substr(v.body, 1, 20) FROM segment_versions v
                WHERE v.app_id = ?1 AND v.segment_id = ?2 ORDER BY v.version LIMIT 1) <> ?3
         RETURNING created, tags, version"
        )
    };
}
const NEXT_VERSION: &str = next_version!("1");
const _: () = assert!(
    IMPORTED_PREFIX.len() == 20,
    "next_version! compares 20 characters"
);

/// [`NEXT_VERSION`] for `?6` updates at once, and their definitions (the `text[]` `?5`, in
/// order, all modified at `?4`) stored as the versions it made, in one statement
/// (PostgreSQL's writable `WITH`): nothing when the segment is not there or is IMPORT. Its
/// row gives the last of the versions.
const UPDATES_AT_ONCE: &str = concat!(
    "WITH next AS (",
    next_version!("?6"),
    "), stored AS (
       INSERT INTO segment_versions (app_id, segment_id, version, modified, body)
       SELECT ?1, ?2, next.version - ?6 + b.n, ?4, b.body
       FROM next, unnest(?5) WITH ORDINALITY AS b(body, n))
     SELECT created, tags, version FROM next"
);

/// Updates written together at most, and their definitions' bytes (one statement's
/// parameter); the update whose turn it is goes in whatever its size.
const MOST_AT_ONCE: (usize, usize) = (64, 1 << 20);

/// An update waiting its turn in [`UpdateQueues`].
struct Waiting {
    ticket: u64,
    app: String,
    id: String,
    body: String,
    done: tokio::sync::oneshot::Sender<Result<Option<Rendered>, ApiError>>,
}

/// Updates of segments waiting their turn in this process, striped by segment: one
/// transaction at a time per stripe, each writing every update of its segment that waits.
/// On PostgreSQL, updates of one segment otherwise each hold a connection, wait in the
/// database for the row's lock and commit (a flush to disk) one after the other.
pub(super) struct UpdateQueues {
    turns: [std::sync::Arc<tokio::sync::Mutex<()>>; super::GATES],
    waiting: [std::sync::Mutex<Vec<Waiting>>; super::GATES],
    tickets: std::sync::atomic::AtomicU64,
}

impl Default for UpdateQueues {
    fn default() -> Self {
        Self {
            turns: std::array::from_fn(|_| Default::default()),
            waiting: std::array::from_fn(|_| Default::default()),
            tickets: Default::default(),
        }
    }
}

impl UpdateQueues {
    fn stripe(app: &str, id: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (app, id).hash(&mut h);
        (h.finish() as usize) % super::GATES
    }

    fn queue(&self, at: usize) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting[at].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The updates of `mine`'s segment that wait at `at` (`mine` among them), in the order
    /// they came, within [`MOST_AT_ONCE`]; those whose requests have gone are dropped.
    fn take(&self, at: usize, mine: u64) -> Vec<Waiting> {
        let mut queue = self.queue(at);
        let Some(me) = queue.iter().position(|w| w.ticket == mine) else {
            return Vec::new();
        };
        let (app, id) = (queue[me].app.clone(), queue[me].id.clone());
        let (most, mut bytes) = MOST_AT_ONCE;
        let mut taken = Vec::new();
        let mut rest = Vec::with_capacity(queue.len());
        for w in queue.drain(..) {
            let same = w.app == app && w.id == id;
            if same && w.done.is_closed() {
                continue;
            }
            let room = taken.len() + 1 < most && w.body.len() <= bytes;
            if same && (w.ticket == mine || room) {
                bytes = bytes.saturating_sub(w.body.len());
                taken.push(w);
            } else {
                rest.push(w);
            }
        }
        *queue = rest;
        taken
    }
}

/// A [`SEGMENT_ROW`] row of segment `id`.
fn stored_row(r: &super::sql::Row, id: &str) -> Result<SegmentRow, super::sql::DbError> {
    Ok(SegmentRow {
        id: id.to_string(),
        created: r.get(0)?,
        tags: r.get(1)?,
        version: r.get(3)?,
        modified: r.get(4)?,
        body: r.get(5)?,
    })
}

/// One stored version of a segment, as read from the tables.
struct SegmentRow {
    id: String,
    version: i32,
    created: String,
    modified: String,
    body: String,
    tags: String,
}

/// How an IMPORT segment's stored definition begins; a dimensional one never does (its
/// first member is `Name`, `Dimensions` or `SegmentGroups`).
const IMPORTED_PREFIX: &str = "{\"ImportDefinition\":";

/// An IMPORT segment's stored definition: its ImportDefinition first, then its Name.
#[derive(serde::Serialize, serde::Deserialize)]
struct ImportedBody {
    #[serde(rename = "ImportDefinition")]
    import_definition: ImportDefinition,
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

pub(super) fn imported_body(
    def: &ImportDefinition,
    name: Option<&str>,
) -> Result<String, ApiError> {
    let text = serde_json::to_string(&ImportedBody {
        import_definition: def.clone(),
        name: name.map(String::from),
    })
    .map_err(|e| ApiError::internal(&e))?;
    debug_assert!(text.starts_with(IMPORTED_PREFIX));
    Ok(text)
}

fn is_imported(body: &str) -> bool {
    body.trim_start().starts_with(IMPORTED_PREFIX)
}

/// A segment already in its wire form (a SegmentResponse's JSON), rendered from the stored
/// definition without parsing it again.
pub type Rendered = Box<serde_json::value::RawValue>;

impl Store {
    /// The SegmentResponse JSON of a stored version: the server's fields, then the stored
    /// definition's (a JSON object this server wrote) spliced in as they are.
    fn render(&self, app: &str, row: &SegmentRow) -> Result<Rendered, ApiError> {
        use std::fmt::Write as _;
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut out = String::with_capacity(row.body.len() + 320);
        let _ = write!(
            out,
            "{{\"ApplicationId\":{},\"Arn\":{},\"CreationDate\":{},\"Id\":{},\"LastModifiedDate\":{},\"SegmentType\":\"{}\",\"Version\":{}",
            q(app),
            q(&self.arn(&format!("{app}/segments/{}", row.id))),
            q(&row.created),
            q(&row.id),
            q(&row.modified),
            if is_imported(&row.body) { "IMPORT" } else { "DIMENSIONAL" },
            row.version
        );
        let tags = row.tags.trim();
        if tags.len() > 2 {
            out.push_str(",\"tags\":");
            out.push_str(tags);
        }
        let body = row.body.trim();
        let inner = body
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| ApiError::internal(&"a stored definition is not a JSON object"))?;
        if !inner.trim().is_empty() {
            out.push(',');
            out.push_str(inner);
        }
        out.push('}');
        serde_json::value::RawValue::from_string(out).map_err(|e| ApiError::internal(&e))
    }

    fn segment_from(&self, app: &str, row: SegmentRow) -> Result<SegmentResponse, ApiError> {
        if is_imported(&row.body) {
            let b: ImportedBody =
                serde_json::from_str(&row.body).map_err(|e| ApiError::internal(&e))?;
            return Ok(SegmentResponse {
                application_id: app.to_string(),
                arn: self.arn(&format!("{app}/segments/{}", row.id)),
                creation_date: row.created,
                dimensions: None,
                id: row.id,
                last_modified_date: Some(row.modified),
                name: b.name,
                segment_groups: None,
                segment_type: "IMPORT".into(),
                tags: non_empty(tags_from_json(&row.tags)),
                version: row.version,
                import_definition: Some(b.import_definition),
            });
        }
        let def: WriteSegmentRequest =
            serde_json::from_str(&row.body).map_err(|e| ApiError::internal(&e))?;
        Ok(SegmentResponse {
            application_id: app.to_string(),
            arn: self.arn(&format!("{app}/segments/{}", row.id)),
            creation_date: row.created,
            dimensions: def.dimensions,
            id: row.id,
            last_modified_date: Some(row.modified),
            name: def.name,
            segment_groups: def.segment_groups,
            segment_type: "DIMENSIONAL".into(),
            tags: non_empty(tags_from_json(&row.tags)),
            version: row.version,
            import_definition: None,
        })
    }

    /// Every segment of an application at its current version (for export jobs, which
    /// evaluate a segment with its base segments).
    pub fn all_segments(&self, app: &str) -> Result<Vec<SegmentResponse>, ApiError> {
        self.read(|c| {
            let ids: Vec<String> = c
                .prepare_cached("SELECT id FROM segments WHERE app_id = ?1 ORDER BY seq")?
                .query_map([app], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter()
                .map(|id| self.get_segment_in(c, app, id, None))
                .collect()
        })
    }

    /// A segment at a version (the current one when `None`).
    pub fn segment_at(
        &self,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<SegmentResponse, ApiError> {
        self.read(|c| self.get_segment_in(c, app, id, version))
    }

    /// The segment's current version, or the given one, as JSON.
    pub fn get_segment(
        &self,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<Rendered, ApiError> {
        self.read(|c| {
            let row = self.segment_row(c, app, id, version)?;
            self.render(app, &row)
        })
    }

    /// GetSegment's answer for the latest version of `id`, as the body bytes: on SQLite
    /// given again while nothing was written since it was read ([`super::answers`]), else
    /// read as [`Store::get_segment`] reads it. Errors are never kept.
    pub fn segment_answer(&self, app: &str, id: &str) -> Result<bytes::Bytes, ApiError> {
        let to_bytes = |r: Rendered| bytes::Bytes::from(String::from(Box::<str>::from(r)));
        let super::Backend::Sqlite { answers, .. } = &self.backend else {
            return self.get_segment(app, id, None).map(to_bytes);
        };
        self.require_ready()?;
        let key = format!("{app}/{id}");
        if let Some(kept) = answers.get(&key) {
            return Ok(kept);
        }
        let read_at = answers.generation();
        let answer = to_bytes(self.get_segment(app, id, None)?);
        answers.put(key, read_at, answer.clone());
        Ok(answer)
    }

    pub(super) fn get_segment_in(
        &self,
        c: &Connection,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<SegmentResponse, ApiError> {
        let row = self.segment_row(c, app, id, version)?;
        self.segment_from(app, row)
    }

    /// A segment found by one statement, awaited: on PostgreSQL off the blocking pool, on the
    /// connection reads of one statement share (the hot read of GetSegment). `None` when it is not found, and always on SQLite: the
    /// caller then reads it as usual ([`Store::get_segment`]), which also says why not.
    pub async fn find_segment(
        &self,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<Option<Rendered>, ApiError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        self.require_ready()?;
        let conn = pool.get_shared().await?;
        // The future holds the values, not the parameters' list (which is not `Send`).
        let read = super::sql::pg_read_one(&conn, SEGMENT_ROW, params![app, id, version]);
        let read = read.await;
        let mut conn = conn;
        let out = shared_read(&mut conn, read)?;
        let row = out.rows.first().map(|r| stored_row(r, id)).transpose()?;
        row.map(|row| self.render(app, &row)).transpose()
    }

    /// GetSegment's answer for the latest version of `id`, as the body bytes, on PostgreSQL
    /// (`None` on SQLite, or when there is no such segment: the caller's read says why).
    /// The answer kept from an earlier read ([`super::answers::Checked`]) is given when the
    /// segment's row, read now, says its version and tags are as they were; otherwise the
    /// version is read whole (at once, when no answer is kept).
    pub async fn checked_segment_answer(
        &self,
        app: &str,
        id: &str,
    ) -> Result<Option<bytes::Bytes>, ApiError> {
        let Some(pool) = self.pg_pool() else {
            return Ok(None);
        };
        self.require_ready()?;
        let key = format!("{app}/{id}");
        let mut conn = pool.get_shared().await?;
        // Answers are kept only as read on shared connections (a pool of 4 or more), and
        // given only as read on the same one: one made again after the database went away
        // reads them again (its history may not be the one read before: a failover to a
        // standby that missed a version, a restore).
        let epoch = conn.shared_epoch();
        if let Some(epoch) = epoch.filter(|&e| self.checked.has(&key, e)) {
            let read = super::sql::pg_read_one(&conn, SEGMENT_STAMP, params![app, id]);
            let read = read.await;
            let out = shared_read(&mut conn, read)?;
            let Some(row) = out.rows.first() else {
                return Ok(None);
            };
            let (version, tags): (i32, String) = (row.get(0)?, row.get(1)?);
            if let Some(kept) = self.checked.get(&key, epoch, version, &tags) {
                return Ok(Some(kept));
            }
        }
        let none: Option<i32> = None;
        let read = super::sql::pg_read_one(&conn, SEGMENT_ROW, params![app, id, none]);
        let read = read.await;
        let out = shared_read(&mut conn, read)?;
        let Some(row) = out.rows.first().map(|r| stored_row(r, id)).transpose()? else {
            return Ok(None);
        };
        let text: Box<str> = self.render(app, &row)?.into();
        let answer = bytes::Bytes::from(String::from(text));
        if let Some(epoch) = epoch {
            self.checked
                .put(key, epoch, row.version, row.tags, answer.clone());
        }
        Ok(Some(answer))
    }

    fn segment_row(
        &self,
        c: &Connection,
        app: &str,
        id: &str,
        version: Option<i32>,
    ) -> Result<SegmentRow, ApiError> {
        let row = c
            .prepare_cached(SEGMENT_ROW)?
            .query_row(params![app, id, version], |r| stored_row(r, id))
            .optional()?;
        match row {
            Some(row) => Ok(row),
            None => {
                self.require_app(c, app)?;
                let exists: Option<i32> = c
                    .query_row(
                        "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2",
                        [app, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                Err(match (exists, version) {
                    (Some(latest), Some(v)) => ApiError::not_found(format!(
                        "Segment {id} has no version {v}; its versions are 1 to {latest}"
                    )),
                    _ => segment_not_found(app, id),
                })
            }
        }
    }

    /// One page of an application's segments, as JSON, ending early rather than growing
    /// past [`super::MAX_PAGE_BYTES`].
    pub fn list_segments(&self, app: &str, page: Page) -> Result<Listing<Rendered>, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            // Each segment's version by its key, in subqueries: as a join, a plan PostgreSQL
            // cached while the tables were small may read every version of the application
            // for each segment of the page (see [`SEGMENT_ROW`]).
            let stmt = c.prepare_cached(
                "SELECT s.seq, s.id, s.created, s.tags, s.version,
                   (SELECT modified FROM segment_versions
                     WHERE app_id = s.app_id AND segment_id = s.id AND version = s.version),
                   (SELECT body FROM segment_versions
                     WHERE app_id = s.app_id AND segment_id = s.id AND version = s.version)
                 FROM segments s
                 WHERE s.app_id = ?1 AND s.seq > ?2 ORDER BY s.seq LIMIT ?3",
            )?;
            let rows: Vec<(i64, String, String, String, i32, String, String)> = stmt
                .query_map(params![app, page.after, page.size as i64 + 1], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let mut items = Vec::with_capacity(rows.len());
            for (seq, id, created, tags, version, modified, body) in rows {
                let row = SegmentRow {
                    id,
                    version,
                    created,
                    modified,
                    body,
                    tags,
                };
                items.push((seq, self.render(app, &row)?));
            }
            paginate_bytes(items, page.size, |r| r.get().len())
        })
    }

    pub fn list_segment_versions(
        &self,
        app: &str,
        id: &str,
        page: Page,
    ) -> Result<Listing<Rendered>, ApiError> {
        self.read(|c| {
            let head = self.get_segment_in(c, app, id, None)?;
            let stmt = c.prepare_cached(
                "SELECT version, modified, body FROM segment_versions
                 WHERE app_id = ?1 AND segment_id = ?2 AND version > ?3 ORDER BY version LIMIT ?4",
            )?;
            let rows: Vec<(i32, String, String)> = stmt
                .query_map(params![app, id, page.after, page.size as i64 + 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            let tags = head.tags.as_ref().map(tags_to_json).unwrap_or_default();
            let mut items = Vec::with_capacity(rows.len());
            for (version, modified, body) in rows {
                let row = SegmentRow {
                    id: id.to_string(),
                    version,
                    created: head.creation_date.clone(),
                    modified,
                    body,
                    tags: tags.clone(),
                };
                items.push((i64::from(version), self.render(app, &row)?));
            }
            paginate_bytes(items, page.size, |r| r.get().len())
        })
    }

    /// The base segments a stored segment's current version names.
    fn stored_bases(tx: &Tx<'_>, app: &str, id: &str) -> Result<Vec<String>, ApiError> {
        let body: Option<String> = tx
            .query_row(
                // The version as a value, as in [`SEGMENT_ROW`].
                "SELECT body FROM segment_versions WHERE app_id = ?1 AND segment_id = ?2
                   AND version = (SELECT version FROM segments WHERE app_id = ?1 AND id = ?2)",
                [app, id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(body) = body.filter(|b| !is_imported(b)) else {
            return Ok(Vec::new());
        };
        let def: WriteSegmentRequest =
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
        Ok(bases_of(&def))
    }

    /// An update must not make a segment build on itself through others (A → B → A), which
    /// no evaluator can give a meaning to.
    fn check_no_cycle(
        tx: &Tx<'_>,
        app: &str,
        this: &str,
        req: &WriteSegmentRequest,
    ) -> Result<(), ApiError> {
        for (path, start) in base_paths(req) {
            // Depth-first from the new base; each segment's bases once.
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            let mut seen = std::collections::BTreeSet::new();
            while let Some((id, trail)) = stack.pop() {
                if id == this {
                    let mut chain = vec![this.to_string()];
                    chain.extend(trail);
                    return Err(ApiError::bad_request(format!(
                        "{path}: the segment would build on itself ({}); base segments cannot form a cycle",
                        chain.join(" → ")
                    )));
                }
                if !seen.insert(id.clone()) {
                    continue;
                }
                for next in Self::stored_bases(tx, app, &id)? {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next, t));
                }
            }
        }
        Ok(())
    }

    /// Checks that every base segment exists in the app (at the version named, if any).
    pub(super) fn check_sources(
        &self,
        tx: &Tx<'_>,
        app: &str,
        this: Option<&str>,
        req: &WriteSegmentRequest,
    ) -> Result<(), ApiError> {
        let Some(groups) = &req.segment_groups else {
            return Ok(());
        };
        for (gi, g) in groups.groups.iter().flatten().enumerate() {
            for (si, SegmentReference { id, version, .. }) in
                g.source_segments.iter().flatten().enumerate()
            {
                let Some(id) = id else { continue };
                let path = format!("SegmentGroups.Groups[{gi}].SourceSegments[{si}].Id");
                if Some(id.as_str()) == this {
                    return Err(ApiError::bad_request(format!(
                        "{path}: a segment cannot be its own base segment"
                    )));
                }
                let latest: Option<i32> = tx
                    .query_row(
                        &format!(
                            "SELECT version FROM segments WHERE app_id = ?1 AND id = ?2{}",
                            tx.for_share()
                        ),
                        [app, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                match (latest, version) {
                    (None, _) => {
                        return Err(ApiError::bad_request(format!(
                            "{path}: segment {id} does not exist in application {app}"
                        )))
                    }
                    (Some(latest), Some(v)) if *v > latest => {
                        return Err(ApiError::bad_request(format!(
                            "{path}: segment {id} has no version {v}; its latest is {latest}"
                        )))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Stores a new segment at version 1 with the request's tags.
    pub fn create_segment(
        &self,
        app: &str,
        req: &WriteSegmentRequest,
    ) -> Result<SegmentResponse, ApiError> {
        let id = new_id();
        let now = now_iso();
        let tags = req.tags.clone().unwrap_or_default();
        let body = definition_json(req)?;
        self.write(|tx| {
            self.require_app(tx, app)?;
            self.check_sources(tx, app, None, req)?;
            tx.execute(
                "INSERT INTO segments (app_id, id, version, created, tags) VALUES (?1, ?2, 1, ?3, ?4)",
                params![app, id, now, tags_to_json(&tags)],
            )?;
            tx.execute(
                "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, 1, ?3, ?4)",
                params![app, id, now, body],
            )?;
            Ok(())
        })?;
        let row = SegmentRow {
            id,
            version: 1,
            created: now.clone(),
            modified: now,
            body,
            tags: tags_to_json(&tags),
        };
        self.segment_from(app, row)
    }

    /// Replaces the definition as a new version; tags in the request are ignored, as Pinpoint
    /// has ignored them on update since 2023-05-22.
    pub fn update_segment(
        &self,
        app: &str,
        id: &str,
        req: &WriteSegmentRequest,
    ) -> Result<Rendered, ApiError> {
        let now = now_iso();
        let body = definition_json(req)?;
        let bases = !base_paths(req).is_empty();
        let updated = self.write(|tx| {
            // The version first: the row stays locked until this transaction ends, so a
            // concurrent update (through any replica) waits and then builds on this one.
            let next = tx
                .query_row(NEXT_VERSION, params![app, id, IMPORTED_PREFIX], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((created, tags, version)) = next else {
                return Ok(None);
            };
            if bases {
                self.check_sources(tx, app, Some(id), req)?;
                Self::check_no_cycle(tx, app, id, req)?;
            }
            tx.execute(
                "INSERT INTO segment_versions (app_id, segment_id, version, modified, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![app, id, version, now, body],
            )?;
            Ok(Some(SegmentRow {
                id: id.to_string(),
                version,
                created,
                modified: now.clone(),
                body: body.clone(),
                tags,
            }))
        })?;
        match updated {
            Some(row) => self.render(app, &row),
            None => Err(self.why_not_updated(app, id)?),
        }
    }

    /// [`Store::update_segment`] of a definition that names no base segment (nothing to
    /// check but what [`UPDATES_AT_ONCE`] checks itself), awaited: on PostgreSQL the
    /// updates of one segment that arrive together are written by one statement, sent
    /// with its `BEGIN` and `COMMIT`, each update its own version in the order they came,
    /// so they share one commit (one flush to disk) and the segment's row is locked for
    /// the time the database takes, not for round trips to this process. PostgreSQL only;
    /// `None` when the update is not done here (on SQLite, with base segments, or when
    /// nothing was updated: the caller then updates as usual, which also says why not).
    ///
    /// The writing runs in a task of its own: a request that goes away mid-way does not
    /// leave the others written with it without their answer.
    pub async fn update_segment_at_once(
        self: &std::sync::Arc<Self>,
        app: &str,
        id: &str,
        req: &WriteSegmentRequest,
    ) -> Result<Option<Rendered>, ApiError> {
        use std::sync::atomic::Ordering;
        if self.pg_pool().is_none() || !base_paths(req).is_empty() {
            return Ok(None);
        }
        let body = definition_json(req)?;
        let queues = &self.updates;
        let at = UpdateQueues::stripe(app, id);
        let ticket = queues.tickets.fetch_add(1, Ordering::Relaxed);
        let (done, mut answer) = tokio::sync::oneshot::channel();
        queues.queue(at).push(Waiting {
            ticket,
            app: app.to_string(),
            id: id.to_string(),
            body,
            done,
        });
        let turn = queues.turns[at].clone().lock_owned().await;
        // Written by an earlier turn's transaction, or still waiting: then this turn writes
        // it, with the updates of its segment behind it.
        use tokio::sync::oneshot::error::TryRecvError;
        match answer.try_recv() {
            Ok(out) => return out,
            Err(TryRecvError::Closed) => {}
            Err(TryRecvError::Empty) => {
                let batch = queues.take(at, ticket);
                let store = self.clone();
                tokio::spawn(async move {
                    store.write_updates(batch).await;
                    drop(turn);
                });
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::internal(
                &"an update's transaction ended without an answer",
            ))
        })
    }

    /// Writes `batch` (updates of one segment) in one transaction and answers each.
    async fn write_updates(&self, batch: Vec<Waiting>) {
        let Some(first) = batch.first() else {
            return;
        };
        let (app, id) = (first.app.clone(), first.id.clone());
        let now = now_iso();
        let bodies = super::multirow::Texts(batch.iter().map(|w| Some(w.body.as_str())).collect());
        let n = batch.len() as i64;
        let out = self
            .write_at_once(
                UPDATES_AT_ONCE,
                &[&app, &id, &IMPORTED_PREFIX, &now, &bodies, &n],
            )
            .await;
        let last = match out.map(|out| out.and_then(|out| out.rows.into_iter().next())) {
            Ok(Some(r)) => r,
            Ok(None) => {
                batch.into_iter().for_each(|w| drop(w.done.send(Ok(None))));
                return;
            }
            Err(e) => {
                batch
                    .into_iter()
                    .for_each(|w| drop(w.done.send(Err(e.clone()))));
                return;
            }
        };
        let head = (|| -> Result<(String, String, i32), super::sql::DbError> {
            Ok((last.get(0)?, last.get(1)?, last.get(2)?))
        })();
        for (i, w) in batch.into_iter().enumerate() {
            let answer = match &head {
                Ok((created, tags, version)) => {
                    let row = SegmentRow {
                        id: id.clone(),
                        created: created.clone(),
                        tags: tags.clone(),
                        version: version - n as i32 + 1 + i as i32,
                        modified: now.clone(),
                        body: w.body,
                    };
                    self.render(&app, &row).map(Some)
                }
                Err(e) => Err(ApiError::internal(e)),
            };
            let _ = w.done.send(answer);
        }
    }

    /// Why segment `id` was not updated: no such application or segment, or it is an
    /// IMPORT segment.
    fn why_not_updated(&self, app: &str, id: &str) -> Result<ApiError, ApiError> {
        self.read(|c| {
            self.require_app(c, app)?;
            let first: Option<String> = c
                .query_row(
                    "SELECT body FROM segment_versions WHERE app_id = ?1 AND segment_id = ?2 ORDER BY version LIMIT 1",
                    [app, id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match first {
                Some(body) if is_imported(&body) => ApiError::bad_request(format!(
                    "Segment {id} is an IMPORT segment: its endpoints change only by an import job naming it as SegmentId"
                )),
                _ => segment_not_found(app, id),
            })
        })
    }

    /// Deletes a segment and all its versions; campaigns that used it become DELETED.
    pub fn delete_segment(&self, app: &str, id: &str) -> Result<SegmentResponse, ApiError> {
        self.write(|tx| {
            // Locked first, so a concurrent update or delete waits and then finds it gone.
            tx.execute(
                "UPDATE segments SET version = version WHERE app_id = ?1 AND id = ?2",
                [app, id],
            )?;
            let current = self.get_segment_in(tx, app, id, None)?;
            tx.execute("DELETE FROM segments WHERE app_id = ?1 AND id = ?2", [app, id])?;
            tx.execute("DELETE FROM segment_versions WHERE app_id = ?1 AND segment_id = ?2", [app, id])?;
            tx.execute("DELETE FROM segment_members WHERE app_id = ?1 AND segment_id = ?2", [app, id])?;
            tx.execute(
                "UPDATE campaigns SET status_override = 'DELETED' WHERE app_id = ?1 AND segment_id = ?2",
                [app, id],
            )?;
            Ok(current)
        })
    }
}

fn definition_json(req: &WriteSegmentRequest) -> Result<String, ApiError> {
    let def = WriteSegmentRequest {
        tags: None,
        ..req.clone()
    };
    serde_json::to_string(&def).map_err(|e| ApiError::internal(&e))
}

/// Every base segment a definition names by id.
fn bases_of(def: &WriteSegmentRequest) -> Vec<String> {
    base_paths(def).into_iter().map(|(_, id)| id).collect()
}

/// Every base segment a definition names by id, with its field path.
fn base_paths(def: &WriteSegmentRequest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (gi, g) in def
        .segment_groups
        .iter()
        .flat_map(|g| g.groups.iter().flatten())
        .enumerate()
    {
        for (si, s) in g.source_segments.iter().flatten().enumerate() {
            if let Some(id) = &s.id {
                out.push((
                    format!("SegmentGroups.Groups[{gi}].SourceSegments[{si}].Id"),
                    id.clone(),
                ));
            }
        }
    }
    out
}
