//! Tags on applications, segments, campaigns and journeys, and on Customer Profiles'
//! domains and segment definitions, addressed by ARN.

use super::sql::{params, Connection, OptionalExtension};

use super::{tags_from_json, tags_to_json, Resource, Store, Tx};
use crate::model::Tags;
use crate::server::error::ApiError;

impl Store {
    /// The table holding a resource's tags, the condition naming its row, and its keys.
    fn tag_row(resource: &Resource) -> (&'static str, &'static str, [&str; 2]) {
        match resource {
            Resource::App(a) => ("apps", "id = ?1", [a, ""]),
            Resource::Segment(a, i) => ("segments", "app_id = ?1 AND id = ?2", [a, i]),
            Resource::Campaign(a, i) => ("campaigns", "app_id = ?1 AND id = ?2", [a, i]),
            Resource::Journey(a, i) => ("journeys", "app_id = ?1 AND id = ?2", [a, i]),
            Resource::Domain(d) => ("cp_domains", "name = ?1", [d, ""]),
            Resource::SegmentDefinition(d, n) => (
                "cp_segment_definitions",
                "domain = ?1 AND name = ?2",
                [d, n],
            ),
        }
    }

    pub(super) fn tags_in(c: &Connection, resource: &Resource) -> Result<Tags, ApiError> {
        let (table, row, [a, b]) = Self::tag_row(resource);
        let sql = format!("SELECT tags FROM {table} WHERE {row}{}", c.for_update());
        let text: Option<String> = if row.contains("?2") {
            c.query_row(&sql, [a, b], |r| r.get(0)).optional()?
        } else {
            c.query_row(&sql, [a], |r| r.get(0)).optional()?
        };
        text.map(|t| tags_from_json(&t))
            .ok_or_else(|| ApiError::not_found("The resource named by the ARN does not exist"))
    }

    pub(super) fn set_tags(tx: &Tx<'_>, resource: &Resource, tags: &Tags) -> Result<(), ApiError> {
        let (table, row, [a, b]) = Self::tag_row(resource);
        let tags = tags_to_json(tags);
        let sql = |n: &str| format!("UPDATE {table} SET tags = ?{n} WHERE {row}");
        if row.contains("?2") {
            tx.execute(&sql("3"), params![a, b, tags])?;
        } else {
            tx.execute(&sql("2"), params![a, tags])?;
        }
        Ok(())
    }

    pub fn list_tags(&self, resource: &Resource) -> Result<Tags, ApiError> {
        self.read(|c| Self::tags_in(c, resource))
    }

    pub fn tag(&self, resource: &Resource, add: &Tags) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut tags = Self::tags_in(tx, resource)?;
            tags.extend(add.clone());
            let problems = if resource.is_profiles() {
                crate::model::profiles::validate::tags_rules("tags", &tags)
            } else {
                crate::model::validate::tags_rules("tags", &tags)
            };
            if let Some(p) = problems.first() {
                return Err(ApiError::bad_request(p.to_string()));
            }
            Self::set_tags(tx, resource, &tags)
        })
    }

    pub fn untag(&self, resource: &Resource, keys: &[String]) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut tags = Self::tags_in(tx, resource)?;
            for k in keys {
                tags.remove(k);
            }
            Self::set_tags(tx, resource, &tags)
        })
    }
}
