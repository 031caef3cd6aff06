//! Customer Profiles: domains and segment definitions (create, read, list, delete).
//!
//! A definition names its sources by name in its domain; they must exist when it is created
//! (checked under a share lock, so they cannot vanish before it commits), and no chain of
//! sources may lead back to it. There is no update: an existing name is answered with the
//! stored definition when the request is the same (the operation is idempotent), and
//! refused when it differs.

use std::collections::BTreeSet;

use serde_json::Value;

use super::sql::{params, Connection, DbError, OptionalExtension, Row, Tx};
use super::{non_empty, paginate, tags_from_json, tags_to_json, Listing, Page, Store};
use crate::model::profiles::{
    self, CreateDomainRequest, CreateSegmentDefinitionRequest, Domain, DomainItem, DomainStats,
    EpochSeconds, SegmentDefinition, SegmentDefinitionItem, SegmentType,
};
use crate::server::error::ApiError;

/// How deep a chain of source segments may go (as the evaluator's limit).
pub const MAX_SOURCE_DEPTH: usize = crate::model::MAX_BASE_DEPTH;

/// What a domain keeps of its CreateDomain request besides its name, days and tags.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DomainBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_encryption_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_letter_queue_url: Option<String>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn at(millis: i64) -> EpochSeconds {
    EpochSeconds { millis }
}

pub(super) fn domain_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Domain {name} does not exist"))
}

fn definition_not_found(domain: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Segment definition {name} does not exist in domain {domain}"
    ))
}

/// A definition's stored body: its request without the tags (kept in their own column).
fn definition_body(req: &CreateSegmentDefinitionRequest) -> Result<String, ApiError> {
    let mut stored = req.clone();
    stored.tags = None;
    stored.segment_sql_query = None;
    serde_json::to_string(&stored).map_err(|e| ApiError::internal(&e))
}

/// The names a definition builds on, each once.
fn sources(req: &CreateSegmentDefinitionRequest) -> BTreeSet<&str> {
    req.segment_groups
        .iter()
        .flat_map(|g| g.groups.iter().flatten())
        .flat_map(|g| g.source_segments.iter().flatten())
        .filter_map(|s| s.segment_definition_name.as_deref())
        .collect()
}

impl Store {
    fn domain_row(r: &Row) -> Result<Domain, DbError> {
        let body: DomainBody =
            serde_json::from_str(&r.get::<_, String>("body")?).unwrap_or_default();
        Ok(Domain {
            domain_name: r.get("name")?,
            default_expiration_days: r.get("expiration_days")?,
            default_encryption_key: body.default_encryption_key,
            dead_letter_queue_url: body.dead_letter_queue_url,
            stats: None,
            created_at: at(r.get("created_ms")?),
            last_updated_at: at(r.get("updated_ms")?),
            tags: non_empty(tags_from_json(&r.get::<_, String>("tags")?)),
        })
    }

    fn definition_row(&self, domain: &str, r: &Row) -> Result<SegmentDefinition, DbError> {
        let name: String = r.get("name")?;
        let req: CreateSegmentDefinitionRequest =
            serde_json::from_str(&r.get::<_, String>("body")?)
                .map_err(|_| DbError::Column("body".into(), "not a stored segment definition"))?;
        Ok(SegmentDefinition {
            segment_definition_arn: profiles::arn(
                &self.region,
                &self.account_id,
                domain,
                Some(&name),
            ),
            segment_definition_name: name,
            display_name: req.display_name,
            description: req.description,
            segment_groups: req.segment_groups,
            segment_sort: req.segment_sort,
            created_at: at(r.get("created_ms")?),
            tags: non_empty(tags_from_json(&r.get::<_, String>("tags")?)),
            segment_type: SegmentType::Classic,
        })
    }

    pub fn create_domain(&self, name: &str, req: &CreateDomainRequest) -> Result<Domain, ApiError> {
        let now = now_ms();
        let body = DomainBody {
            default_encryption_key: req.default_encryption_key.clone(),
            dead_letter_queue_url: req.dead_letter_queue_url.clone(),
        };
        let body = serde_json::to_string(&body).map_err(|e| ApiError::internal(&e))?;
        let tags = req.tags.clone().unwrap_or_default();
        let created = self.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO cp_domains (name, expiration_days, body, created_ms, updated_ms, tags) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                params![name, req.default_expiration_days, body, now, tags_to_json(&tags)],
            )?)
        })?;
        if created == 0 {
            return Err(ApiError::bad_request(format!(
                "Domain {name} already exists"
            )));
        }
        Ok(Domain {
            domain_name: name.to_string(),
            default_expiration_days: req.default_expiration_days,
            default_encryption_key: req.default_encryption_key.clone(),
            dead_letter_queue_url: req.dead_letter_queue_url.clone(),
            stats: None,
            created_at: at(now),
            last_updated_at: at(now),
            tags: non_empty(tags),
        })
    }

    /// The domain, with its profile count in `Stats`.
    pub fn get_domain(&self, name: &str) -> Result<Domain, ApiError> {
        self.read(|c| {
            let mut domain = c
                .query_row(
                    "SELECT * FROM cp_domains WHERE name = ?1",
                    [name],
                    Self::domain_row,
                )
                .optional()?
                .ok_or_else(|| domain_not_found(name))?;
            let profiles: i64 = c.query_row(
                "SELECT COUNT(*) FROM cp_profiles WHERE domain = ?1",
                [name],
                |r| r.get(0),
            )?;
            domain.stats = Some(DomainStats {
                profile_count: profiles,
                ..DomainStats::default()
            });
            Ok(domain)
        })
    }

    pub fn list_domains(&self, page: Page) -> Result<Listing<DomainItem>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached("SELECT * FROM cp_domains WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
                .query_map(params![page.after, page.size as i64 + 1], |r| {
                    Ok((r.get::<_, i64>("seq")?, Self::domain_row(r)?.item()))
                })?;
            paginate(rows, page.size)
        })
    }

    /// Deletes the domain and everything in it, in one transaction.
    pub fn delete_domain(&self, name: &str) -> Result<(), ApiError> {
        self.write(|tx| {
            // The domain's row first: writes in it hold it shared (see `require_domain`), so
            // this waits for them, and the ones after find it gone.
            if tx.execute("DELETE FROM cp_domains WHERE name = ?1", [name])? == 0 {
                return Err(domain_not_found(name));
            }
            for table in [
                "cp_profiles",
                "cp_profile_keys",
                "cp_segment_definitions",
                "cp_segment_sources",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE domain = ?1"), [name])?;
            }
            tx.execute(
                "DELETE FROM jobs WHERE app_id = ?1",
                [format!("domains/{name}")],
            )?;
            Ok(())
        })
    }

    /// The domain must exist; in a write, it then cannot be deleted before the write ends.
    pub(super) fn require_domain(c: &Connection, name: &str) -> Result<(), ApiError> {
        c.query_row(
            &format!("SELECT 1 FROM cp_domains WHERE name = ?1{}", c.for_share()),
            [name],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(|_| ())
        .ok_or_else(|| domain_not_found(name))
    }

    /// Creates a definition, or answers the stored one when the same request made it.
    pub fn create_segment_definition(
        &self,
        domain: &str,
        name: &str,
        req: &CreateSegmentDefinitionRequest,
    ) -> Result<SegmentDefinition, ApiError> {
        let now = now_ms();
        let body = definition_body(req)?;
        let tags = req.tags.clone().unwrap_or_default();
        let sources = sources(req);
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            let created = tx.execute(
                "INSERT INTO cp_segment_definitions (domain, name, created_ms, body, tags) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (domain, name) DO NOTHING",
                params![domain, name, now, body, tags_to_json(&tags)],
            )?;
            if created == 0 {
                let stored = self.definition_in(tx, domain, name)?;
                return if same_request(&stored.request(), req) {
                    Ok(stored)
                } else {
                    Err(ApiError::bad_request(format!(
                        "Segment definition {name} already exists in domain {domain} with another definition; there is no update: delete it and create it again"
                    )))
                };
            }
            self.check_definition_sources(tx, domain, name, req)?;
            for source in &sources {
                tx.execute(
                    "INSERT INTO cp_segment_sources (domain, name, source) VALUES (?1, ?2, ?3)",
                    params![domain, name, source],
                )?;
            }
            self.definition_in(tx, domain, name)
        })
    }

    /// Every source names a definition of the domain (held shared until the write ends), and
    /// no chain of sources leads back to `name` or goes deeper than [`MAX_SOURCE_DEPTH`],
    /// counting the definitions already built on `name`: a name deleted and created again
    /// is still named by the definitions that were built on it, and the chains through it
    /// are theirs too.
    fn check_definition_sources(
        &self,
        tx: &Tx<'_>,
        domain: &str,
        name: &str,
        req: &CreateSegmentDefinitionRequest,
    ) -> Result<(), ApiError> {
        let above = Self::levels_built_on(tx, domain, name)?;
        for (gi, g) in req
            .segment_groups
            .iter()
            .flat_map(|g| g.groups.iter().flatten())
            .enumerate()
        {
            for (si, s) in g.source_segments.iter().flatten().enumerate() {
                let Some(source) = s.segment_definition_name.as_deref() else {
                    continue;
                };
                let path = format!(
                    "SegmentGroups.Groups[{gi}].SourceSegments[{si}].SegmentDefinitionName"
                );
                if source == name {
                    return Err(ApiError::bad_request(format!(
                        "{path}: a segment definition cannot be its own source"
                    )));
                }
                let found = tx
                    .query_row(
                        &format!(
                            "SELECT 1 FROM cp_segment_definitions WHERE domain = ?1 AND name = ?2{}",
                            tx.for_share()
                        ),
                        [domain, source],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?;
                if found.is_none() {
                    return Err(ApiError::bad_request(format!(
                        "{path}: segment definition {source} does not exist in domain {domain}"
                    )));
                }
                // Walk the chain below this source: `name` may be named there by a definition
                // whose source was deleted and is now created again.
                let mut level: BTreeSet<String> = BTreeSet::from([source.to_string()]);
                let mut depth = 1;
                while !level.is_empty() {
                    if level.contains(name) {
                        return Err(ApiError::bad_request(format!(
                            "{path}: {source} builds on {name} (through its sources): a definition cannot build on itself"
                        )));
                    }
                    if above + depth > MAX_SOURCE_DEPTH {
                        return Err(ApiError::bad_request(if above == 0 {
                            format!("{path}: the chain of sources below {source} is deeper than {MAX_SOURCE_DEPTH}")
                        } else {
                            format!(
                                "{path}: with the {above} levels of definitions that already build on {name}, the chain of sources through {source} is deeper than {MAX_SOURCE_DEPTH}"
                            )
                        }));
                    }
                    let mut next = BTreeSet::new();
                    for n in &level {
                        let rows = tx
                            .prepare_cached(
                                "SELECT source FROM cp_segment_sources WHERE domain = ?1 AND name = ?2",
                            )?
                            .query_map([domain, n.as_str()], |r| r.get::<_, String>(0))?;
                        for r in rows {
                            next.insert(r?);
                        }
                    }
                    level = next;
                    depth += 1;
                }
            }
        }
        Ok(())
    }

    /// How many levels of definitions name `name` as a source, through each other (0 when
    /// none does). A chain that comes back to `name` is a cycle the caller refuses; this
    /// stops counting past [`MAX_SOURCE_DEPTH`].
    fn levels_built_on(tx: &Tx<'_>, domain: &str, name: &str) -> Result<usize, ApiError> {
        let mut level: BTreeSet<String> = BTreeSet::from([name.to_string()]);
        let mut levels = 0;
        while levels <= MAX_SOURCE_DEPTH {
            let mut next = BTreeSet::new();
            for n in &level {
                let rows = tx
                    .prepare_cached(
                        "SELECT name FROM cp_segment_sources WHERE domain = ?1 AND source = ?2",
                    )?
                    .query_map([domain, n.as_str()], |r| r.get::<_, String>(0))?;
                for r in rows {
                    next.insert(r?);
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
            levels += 1;
        }
        Ok(levels)
    }

    fn definition_in(
        &self,
        c: &Connection,
        domain: &str,
        name: &str,
    ) -> Result<SegmentDefinition, ApiError> {
        let found = c
            .query_row(
                "SELECT * FROM cp_segment_definitions WHERE domain = ?1 AND name = ?2",
                [domain, name],
                |r| self.definition_row(domain, r),
            )
            .optional()?;
        match found {
            Some(definition) => Ok(definition),
            None => {
                Self::require_domain(c, domain)?;
                Err(definition_not_found(domain, name))
            }
        }
    }

    pub fn get_segment_definition(
        &self,
        domain: &str,
        name: &str,
    ) -> Result<SegmentDefinition, ApiError> {
        self.read(|c| self.definition_in(c, domain, name))
    }

    pub fn list_segment_definitions(
        &self,
        domain: &str,
        page: Page,
    ) -> Result<Listing<SegmentDefinitionItem>, ApiError> {
        self.read(|c| {
            Self::require_domain(c, domain)?;
            let rows = c
                .prepare_cached(
                    "SELECT * FROM cp_segment_definitions WHERE domain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![domain, page.after, page.size as i64 + 1], |r| {
                    Ok((r.get::<_, i64>("seq")?, self.definition_row(domain, r)?.item()))
                })?;
            paginate(rows, page.size)
        })
    }

    pub fn delete_segment_definition(&self, domain: &str, name: &str) -> Result<(), ApiError> {
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            let n = tx.execute(
                "DELETE FROM cp_segment_definitions WHERE domain = ?1 AND name = ?2",
                [domain, name],
            )?;
            if n == 0 {
                return Err(definition_not_found(domain, name));
            }
            tx.execute(
                "DELETE FROM cp_segment_sources WHERE domain = ?1 AND name = ?2",
                [domain, name],
            )?;
            Ok(())
        })
    }
}

/// Whether two create requests define the same segment (JSON values compared, so the order
/// of map keys does not matter; an empty tag map is no tags).
fn same_request(a: &CreateSegmentDefinitionRequest, b: &CreateSegmentDefinitionRequest) -> bool {
    let norm = |r: &CreateSegmentDefinitionRequest| -> Option<Value> {
        let mut r = r.clone();
        r.tags = r.tags.filter(|t| !t.is_empty());
        r.segment_sql_query = None;
        serde_json::to_value(r).ok()
    };
    norm(a).is_some() && norm(a) == norm(b)
}

fn profile_not_found(domain: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("Profile {id} does not exist in domain {domain}"))
}

/// A profile found by SearchProfiles, and which of its keys found it.
#[derive(Debug)]
pub struct Found {
    pub profile: serde_json::Map<String, Value>,
    pub by: Vec<(String, Vec<String>)>,
}

/// At most this many ids in one `IN (…)` list.
const IN_CHUNK: usize = 500;

impl Store {
    /// Rewrites a profile's search keys from its stored fields.
    fn index_profile(
        tx: &Tx<'_>,
        domain: &str,
        id: &str,
        fields: &profiles::ProfileFields,
    ) -> Result<(), ApiError> {
        tx.execute(
            "DELETE FROM cp_profile_keys WHERE domain = ?1 AND profile_id = ?2",
            [domain, id],
        )?;
        for (key, value) in profiles::search_keys(id, fields) {
            tx.execute(
                "INSERT INTO cp_profile_keys (domain, key_name, value, profile_id) VALUES (?1, ?2, ?3, ?4)",
                params![domain, key, value, id],
            )?;
        }
        Ok(())
    }

    /// Stores a new profile; its id is made here (32 hex digits).
    pub fn create_profile(
        &self,
        domain: &str,
        fields: &profiles::ProfileFields,
    ) -> Result<String, ApiError> {
        let id = super::new_id();
        let mut body = match serde_json::to_value(fields) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::internal(&"a profile did not encode as an object")),
        };
        body.insert("ProfileId".into(), Value::String(id.clone()));
        let text = serde_json::to_string(&body).map_err(|e| ApiError::internal(&e))?;
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            tx.execute(
                "INSERT INTO cp_profiles (domain, id, body) VALUES (?1, ?2, ?3)",
                params![domain, id, text],
            )?;
            Self::index_profile(tx, domain, &id, fields)
        })?;
        Ok(id)
    }

    /// Applies UpdateProfile's fields (see `model::profiles::merge_update`).
    pub fn update_profile(
        &self,
        domain: &str,
        id: &str,
        update: &serde_json::Map<String, Value>,
    ) -> Result<(), ApiError> {
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            let stored: String = tx
                .query_row(
                    &format!(
                        "SELECT body FROM cp_profiles WHERE domain = ?1 AND id = ?2{}",
                        tx.for_update()
                    ),
                    [domain, id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| profile_not_found(domain, id))?;
            let mut body: serde_json::Map<String, Value> =
                serde_json::from_str(&stored).map_err(|e| ApiError::internal(&e))?;
            profiles::merge_update(&mut body, update);
            body.insert("ProfileId".into(), Value::String(id.to_string()));
            let mut fields_only = body.clone();
            fields_only.remove("ProfileId");
            let fields: profiles::ProfileFields =
                serde_json::from_value(Value::Object(fields_only))
                    .map_err(|e| ApiError::internal(&e))?;
            if let Some(v) = profiles::validate::profile_fields(&fields, false)
                .into_iter()
                .next()
            {
                return Err(ApiError::bad_request(v.to_string()));
            }
            let text = serde_json::to_string(&body).map_err(|e| ApiError::internal(&e))?;
            tx.execute(
                "UPDATE cp_profiles SET body = ?3 WHERE domain = ?1 AND id = ?2",
                params![domain, id, text],
            )?;
            Self::index_profile(tx, domain, id, &fields)
        })
    }

    pub fn delete_profile(&self, domain: &str, id: &str) -> Result<(), ApiError> {
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            if tx.execute(
                "DELETE FROM cp_profiles WHERE domain = ?1 AND id = ?2",
                [domain, id],
            )? == 0
            {
                return Err(profile_not_found(domain, id));
            }
            tx.execute(
                "DELETE FROM cp_profile_keys WHERE domain = ?1 AND profile_id = ?2",
                [domain, id],
            )?;
            Ok(())
        })
    }

    /// SearchProfiles: the profiles whose keys hold one of the values, for every key (AND)
    /// or any (OR, the default), in the order they were created.
    pub fn search_profiles(
        &self,
        domain: &str,
        req: &profiles::SearchProfilesRequest,
        page: Page,
    ) -> Result<Listing<Found>, ApiError> {
        let mut keys = vec![profiles::SearchKey {
            key_name: req.key_name.clone(),
            values: req.values.clone(),
        }];
        keys.extend(req.additional_search_keys.iter().flatten().cloned());
        let all = req.logical_operator == Some(profiles::LogicalOperator::And);
        self.read(|c| {
            Self::require_domain(c, domain)?;
            // For each key, the profiles it finds and by which values.
            let mut by_key: Vec<std::collections::BTreeMap<String, Vec<String>>> = Vec::new();
            for k in &keys {
                let marks: Vec<String> = (0..k.values.len()).map(|i| format!("?{}", i + 3)).collect();
                let sql = format!(
                    "SELECT value, profile_id FROM cp_profile_keys WHERE domain = ?1 AND key_name = ?2 AND value IN ({}) ORDER BY value",
                    marks.join(", ")
                );
                let mut args: Vec<&dyn super::sql::Param> = vec![&domain, &k.key_name];
                args.extend(k.values.iter().map(|v| v as &dyn super::sql::Param));
                let mut found: std::collections::BTreeMap<String, Vec<String>> = Default::default();
                for row in c.prepare(&sql)?.query_map(args.as_slice(), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })? {
                    let (value, id) = row?;
                    found.entry(id).or_default().push(value);
                }
                by_key.push(found);
            }
            let ids: BTreeSet<&String> = if all {
                by_key[0]
                    .keys()
                    .filter(|id| by_key.iter().all(|m| m.contains_key(*id)))
                    .collect()
            } else {
                by_key.iter().flat_map(|m| m.keys()).collect()
            };
            // Their positions, then one page of them in order.
            let ids: Vec<&String> = ids.into_iter().collect();
            let mut placed: Vec<(i64, String)> = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(IN_CHUNK) {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 3)).collect();
                let sql = format!(
                    "SELECT seq, body FROM cp_profiles WHERE domain = ?1 AND seq > ?2 AND id IN ({})",
                    marks.join(", ")
                );
                let mut args: Vec<&dyn super::sql::Param> = vec![&domain, &page.after];
                args.extend(chunk.iter().map(|v| *v as &dyn super::sql::Param));
                for row in c.prepare(&sql)?.query_map(args.as_slice(), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })? {
                    placed.push(row?);
                }
            }
            placed.sort_by_key(|(seq, _)| *seq);
            placed.truncate(page.size + 1);
            let rows = placed.into_iter().map(|(seq, text)| {
                let profile: serde_json::Map<String, Value> = serde_json::from_str(&text)
                    .map_err(|_| DbError::Column("body".into(), "not a stored profile"))?;
                let id = profile
                    .get("ProfileId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let by = keys
                    .iter()
                    .zip(&by_key)
                    .filter_map(|(k, m)| m.get(&id).map(|v| (k.key_name.clone(), v.clone())))
                    .collect();
                Ok((seq, Found { profile, by }))
            });
            paginate(rows, page.size)
        })
    }

    /// Profiles of the domain by id (the ones that exist), for membership checks.
    pub fn profiles_by_id(
        &self,
        domain: &str,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, ApiError> {
        self.read(|c| {
            Self::require_domain(c, domain)?;
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(IN_CHUNK) {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 2)).collect();
                let sql = format!(
                    "SELECT id, body FROM cp_profiles WHERE domain = ?1 AND id IN ({})",
                    marks.join(", ")
                );
                let mut args: Vec<&dyn super::sql::Param> = vec![&domain];
                args.extend(chunk.iter().map(|v| v as &dyn super::sql::Param));
                for row in c.prepare(&sql)?.query_map(args.as_slice(), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })? {
                    out.push(row?);
                }
            }
            Ok(out)
        })
    }
}

/// Estimates (a read-only key may start them), and snapshots, of one domain running at
/// once, at most, of each kind.
pub const MAX_OPEN_JOBS: i64 = 100;

/// The `jobs.app_id` of a domain's jobs (no application id holds a `/`).
pub fn jobs_app(domain: &str) -> String {
    format!("domains/{domain}")
}

impl Store {
    /// Every definition of the domain, by name, with its criteria: where sources are found.
    pub fn definition_catalog(
        &self,
        domain: &str,
    ) -> Result<Vec<(String, profiles::SegmentGroups)>, ApiError> {
        self.read(|c| {
            Self::require_domain(c, domain)?;
            let rows = c
                .prepare_cached(
                    "SELECT name, body FROM cp_segment_definitions WHERE domain = ?1 ORDER BY seq",
                )?
                .query_map([domain], |r| {
                    let req: CreateSegmentDefinitionRequest =
                        serde_json::from_str(&r.get::<_, String>(1)?).map_err(|_| {
                            DbError::Column("body".into(), "not a stored segment definition")
                        })?;
                    Ok((
                        r.get::<_, String>(0)?,
                        req.segment_groups.unwrap_or_default(),
                    ))
                })?;
            Ok(rows.collect::<Result<Vec<_>, DbError>>()?)
        })
    }

    /// Up to `limit` of the domain's profiles after position `after`, in order.
    pub fn profiles_after(
        &self,
        domain: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, ApiError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT seq, body FROM cp_profiles WHERE domain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![domain, after, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
            Ok(rows.collect::<Result<Vec<_>, DbError>>()?)
        })
    }

    /// Records a new estimate or snapshot (of the definition `segment`, which must exist) as
    /// a job this server holds; `body` is its job JSON without `Id`, which is set here.
    pub fn create_profile_job(
        &self,
        domain: &str,
        kind: super::JobKind,
        segment: Option<&str>,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        let id = super::new_id();
        body["Id"] = Value::String(id.clone());
        body["JobStatus"] = Value::String("CREATED".into());
        let text = body.to_string();
        let app = jobs_app(domain);
        self.write(|tx| {
            Self::require_domain(tx, domain)?;
            if let Some(name) = segment {
                let found = tx
                    .query_row(
                        &format!(
                            "SELECT 1 FROM cp_segment_definitions WHERE domain = ?1 AND name = ?2{}",
                            tx.for_share()
                        ),
                        [domain, name],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?;
                if found.is_none() {
                    return Err(definition_not_found(domain, name));
                }
            }
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM jobs WHERE app_id = ?1 AND kind = ?2 AND status NOT IN ('COMPLETED', 'FAILED')",
                [app.as_str(), kind.as_str()],
                |r| r.get(0),
            )?;
            if open >= MAX_OPEN_JOBS {
                return Err(ApiError::new(
                    crate::server::error::ErrorKind::TooManyRequests,
                    format!("domain {domain} has {open} jobs of this kind running; at most {MAX_OPEN_JOBS} run at once: retry when one is done"),
                ));
            }
            tx.execute(
                &format!(
                    "INSERT INTO jobs (app_id, id, kind, segment_id, status, body, owner, lease_until)
                     VALUES (?1, ?2, ?3, ?4, 'CREATED', ?5, ?6, {} + ?7)",
                    super::jobs::now_ms(tx.dialect())
                ),
                params![
                    app,
                    id,
                    kind.as_str(),
                    segment,
                    text,
                    self.replica,
                    self.lease_ms()
                ],
            )?;
            Ok(())
        })?;
        Ok(body)
    }

    /// An estimate or a snapshot (of the definition `segment`) of the domain.
    pub fn get_profile_job(
        &self,
        domain: &str,
        kind: super::JobKind,
        segment: Option<&str>,
        id: &str,
    ) -> Result<Value, ApiError> {
        self.read(|c| {
            Self::require_domain(c, domain)?;
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM jobs WHERE app_id = ?1 AND id = ?2 AND kind = ?3
                       AND (?4 IS NULL OR segment_id = ?4)",
                    params![jobs_app(domain), id, kind.as_str(), segment],
                    |r| r.get(0),
                )
                .optional()?;
            let body = body.ok_or_else(|| {
                let what = match kind {
                    super::JobKind::SegmentSnapshot => "Segment snapshot",
                    _ => "Segment estimate",
                };
                ApiError::not_found(format!("{what} {id} does not exist in domain {domain}"))
            })?;
            serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))
        })
    }
}
