//! Tags on applications, segments, campaigns and journeys, addressed by ARN.

use super::sql::{params, Connection, OptionalExtension};

use super::{tags_from_json, tags_to_json, Resource, Store, Tx};
use crate::model::Tags;
use crate::server::error::ApiError;

impl Store {
    pub(super) fn tag_target(resource: &Resource) -> (&'static str, &str, Option<&str>) {
        match resource {
            Resource::App(a) => ("apps", a, None),
            Resource::Segment(a, i) => ("segments", a, Some(i)),
            Resource::Campaign(a, i) => ("campaigns", a, Some(i)),
            Resource::Journey(a, i) => ("journeys", a, Some(i)),
        }
    }

    pub(super) fn tags_in(c: &Connection, resource: &Resource) -> Result<Tags, ApiError> {
        let (table, app, id) = Self::tag_target(resource);
        let text: Option<String> = match id {
            None => c
                .query_row(
                    &format!("SELECT tags FROM apps WHERE id = ?1{}", c.for_update()),
                    [app],
                    |r| r.get(0),
                )
                .optional()?,
            Some(id) => c
                .query_row(
                    &format!(
                        "SELECT tags FROM {table} WHERE app_id = ?1 AND id = ?2{}",
                        c.for_update()
                    ),
                    [app, id],
                    |r| r.get(0),
                )
                .optional()?,
        };
        text.map(|t| tags_from_json(&t))
            .ok_or_else(|| ApiError::not_found("The resource named by the ARN does not exist"))
    }

    pub(super) fn set_tags(tx: &Tx<'_>, resource: &Resource, tags: &Tags) -> Result<(), ApiError> {
        let (table, app, id) = Self::tag_target(resource);
        match id {
            None => tx.execute(
                "UPDATE apps SET tags = ?2 WHERE id = ?1",
                params![app, tags_to_json(tags)],
            )?,
            Some(id) => tx.execute(
                &format!("UPDATE {table} SET tags = ?3 WHERE app_id = ?1 AND id = ?2"),
                params![app, id, tags_to_json(tags)],
            )?,
        };
        Ok(())
    }

    pub fn list_tags(&self, resource: &Resource) -> Result<Tags, ApiError> {
        self.read(|c| Self::tags_in(c, resource))
    }

    pub fn tag(&self, resource: &Resource, add: &Tags) -> Result<(), ApiError> {
        self.write(|tx| {
            let mut tags = Self::tags_in(tx, resource)?;
            tags.extend(add.clone());
            let problems = crate::model::validate::tags_rules("tags", &tags);
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
