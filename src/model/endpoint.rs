//! Endpoints: the wire shapes (EndpointRequest, EndpointBatchItem, EndpointResponse), the
//! documented limits, and how an update merges into what is stored. Pure: the server stores
//! them and the audience side reads import files into them (`audience::rows`).
//!
//! Merge rules (Pinpoint's, where its model documents them; chosen where it is silent):
//! - a field given replaces the stored one; a field left out keeps it;
//! - `Attributes`, `Metrics` and `User.UserAttributes` are merged per key: a key given
//!   overwrites that attribute's values, other keys stay; a key given an empty list is
//!   removed;
//! - `Demographic` and `Location` are merged per member;
//! - `CreationDate` is set once; `EffectiveDate` is the request's, or the time of the
//!   update; `EndpointStatus` is `ACTIVE` unless the request says otherwise; `CohortId` is
//!   fixed per endpoint id (a hash, "0"–"99"); `RequestId` is the updating request's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A request or row that breaks a rule: `message` names the field and what was expected
/// (the server answers it as a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

/// Pinpoint's quotas on endpoints.
pub const MAX_ENDPOINT_BYTES: usize = 15 * 1024;
pub const MAX_ATTRIBUTE_NAME: usize = 50;
pub const MAX_ATTRIBUTE_VALUE: usize = 100;
pub const MAX_VALUES_PER_ATTRIBUTE: usize = 50;
pub const MAX_ATTRIBUTES_PER_APP: usize = 250;
pub const MAX_ENDPOINTS_PER_USER: usize = 15;
pub const MAX_BATCH_ITEMS: usize = 100;
pub const MAX_ID: usize = 128;

pub const CHANNEL_TYPES: &[&str] = &[
    "PUSH",
    "GCM",
    "APNS",
    "APNS_SANDBOX",
    "APNS_VOIP",
    "APNS_VOIP_SANDBOX",
    "ADM",
    "SMS",
    "VOICE",
    "EMAIL",
    "BAIDU",
    "CUSTOM",
    "IN_APP",
];

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Demographic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attributes: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// EndpointResponse; requests use the same fields less the server's (checked by
/// [`Endpoint::request`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographic: Option<Demographic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

/// EndpointBatchRequest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[serde(rename = "Item")]
    pub item: Option<Vec<Endpoint>>,
}

fn bad(field: &str, what: impl std::fmt::Display) -> Invalid {
    Invalid {
        message: format!("{field}: {what}"),
    }
}

/// Where an endpoint comes from, for its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// UpdateEndpoint (the id is in the path) or a batch item (`Id` given).
    Request { batch: bool },
    /// A row of an import file: `EndpointStatus` and `EffectiveDate` may not be set, and
    /// `ChannelType` and `Address` are required.
    Import,
}

impl Endpoint {
    /// Checks a request (or import row) on its own: `prefix` names it in errors
    /// (`Item[3].` for a batch item, empty otherwise).
    pub fn check_request(&self, prefix: &str, origin: Origin) -> Result<(), Invalid> {
        let f = |name: &str| format!("{prefix}{name}");
        for (name, set) in [
            ("ApplicationId", self.application_id.is_some()),
            ("CohortId", self.cohort_id.is_some()),
            ("CreationDate", self.creation_date.is_some()),
        ] {
            if set {
                return Err(bad(
                    &f(name),
                    "set by the server; not a member of the request",
                ));
            }
        }
        match origin {
            Origin::Request { batch: true } => {
                if self.id.as_deref().is_none_or(str::is_empty) {
                    return Err(bad(&f("Id"), "missing required member"));
                }
            }
            Origin::Request { batch: false } => {
                if self.id.is_some() {
                    return Err(bad(
                        &f("Id"),
                        "not a member of EndpointRequest: the id is in the path",
                    ));
                }
            }
            Origin::Import => {
                for (name, set) in [
                    ("EndpointStatus", self.endpoint_status.is_some()),
                    ("EffectiveDate", self.effective_date.is_some()),
                ] {
                    if set {
                        return Err(bad(&f(name), "an import may not set it"));
                    }
                }
                // ChannelType and Address are required of a new endpoint (checked where the
                // store knows), and of a row without Id (its id derives from them).
                if self.id.is_none() {
                    if self.channel_type.is_none() {
                        return Err(bad(&f("ChannelType"), "missing required member (a row without Id needs ChannelType and Address)"));
                    }
                    if self.address.as_deref().is_none_or(str::is_empty) {
                        return Err(bad(&f("Address"), "missing required member (a row without Id needs ChannelType and Address)"));
                    }
                }
            }
        }
        if let Some(id) = &self.id {
            check_id(&f("Id"), id)?;
        }
        if let Some(c) = &self.channel_type {
            if !CHANNEL_TYPES.contains(&c.as_str()) {
                return Err(bad(
                    &f("ChannelType"),
                    crate::model::unknown_value_message(c, CHANNEL_TYPES),
                ));
            }
        }
        if let Some(o) = &self.opt_out {
            if o != "ALL" && o != "NONE" {
                return Err(bad(
                    &f("OptOut"),
                    format!("expected ALL or NONE, found {:?}", crate::text::safe(o)),
                ));
            }
        }
        if let Some(s) = &self.endpoint_status {
            if s != "ACTIVE" && s != "INACTIVE" {
                return Err(bad(
                    &f("EndpointStatus"),
                    format!("expected ACTIVE or INACTIVE, found {s:?}"),
                ));
            }
        }
        if let Some(d) = &self.effective_date {
            if crate::model::validate::parse_instant(d).is_none() {
                return Err(bad(
                    &f("EffectiveDate"),
                    format!("not an ISO-8601 instant: {d:?}"),
                ));
            }
        }
        if let Some(loc) = &self.location {
            if loc.latitude.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
                return Err(bad(
                    &f("Location.Latitude"),
                    "expected a number from -90 to 90",
                ));
            }
            if loc
                .longitude
                .is_some_and(|l| !(-180.0..=180.0).contains(&l))
            {
                return Err(bad(
                    &f("Location.Longitude"),
                    "expected a number from -180 to 180",
                ));
            }
        }
        if let Some(u) = self.user.as_ref().and_then(|u| u.user_id.as_ref()) {
            check_id(&f("User.UserId"), u)?;
        }
        self.check_attributes(prefix)
    }

    fn check_attributes(&self, prefix: &str) -> Result<(), Invalid> {
        let lists = [
            ("Attributes", self.attributes.as_ref()),
            (
                "User.UserAttributes",
                self.user.as_ref().and_then(|u| u.user_attributes.as_ref()),
            ),
        ];
        for (family, map) in lists {
            for (name, values) in map.into_iter().flatten() {
                check_name(prefix, family, name)?;
                if values.len() > MAX_VALUES_PER_ATTRIBUTE {
                    return Err(bad(
                        &format!("{prefix}{family}.{name}"),
                        format!(
                            "at most {MAX_VALUES_PER_ATTRIBUTE} values per attribute, found {}",
                            values.len()
                        ),
                    ));
                }
                for v in values {
                    if v.chars().count() > MAX_ATTRIBUTE_VALUE {
                        return Err(bad(
                            &format!("{prefix}{family}.{name}"),
                            format!(
                                "a value is at most {MAX_ATTRIBUTE_VALUE} characters, found one of {}",
                                v.chars().count()
                            ),
                        ));
                    }
                }
            }
        }
        for (name, v) in self.metrics.iter().flatten() {
            check_name(prefix, "Metrics", name)?;
            if !v.is_finite() {
                return Err(bad(
                    &format!("{prefix}Metrics.{name}"),
                    "expected a finite number",
                ));
            }
        }
        Ok(())
    }

    /// Every custom attribute name, by family (`Attributes`, `Metrics`, `UserAttributes`),
    /// for the per-application quota.
    pub fn attribute_names(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let attrs = self
            .attributes
            .iter()
            .flatten()
            .map(|(k, _)| ("Attributes", k.as_str()));
        let metrics = self
            .metrics
            .iter()
            .flatten()
            .map(|(k, _)| ("Metrics", k.as_str()));
        let users = self
            .user
            .iter()
            .flat_map(|u| u.user_attributes.iter().flatten())
            .map(|(k, _)| ("UserAttributes", k.as_str()));
        attrs.chain(metrics).chain(users)
    }

    /// `message` with every name this endpoint's sender chose for its attributes, metrics
    /// and user attributes shown as `*` where the message's field path holds it
    /// (`Attributes.NAME:` becomes `Attributes.*:`), longest first: a message about a row of
    /// someone's file, for a reader who may not read the file.
    pub fn without_names(&self, message: &str) -> String {
        // As written, and as a message shows it escaped ([`crate::text::safe`]).
        let mut names: Vec<String> = self
            .attribute_names()
            .flat_map(|(_, name)| [name.to_string(), crate::text::safe(name).into_owned()])
            .filter(|n| !n.is_empty() && n != "*")
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        names.dedup();
        let mut out = message.to_string();
        for name in &names {
            let name = name.as_str();
            let mut at = 0;
            while let Some(i) = out[at..].find(name).map(|i| at + i) {
                let end = i + name.len();
                let in_path = out[..i].ends_with('.')
                    && matches!(
                        out[end..].chars().next(),
                        None | Some(':' | '.' | '[' | ' ')
                    );
                if in_path {
                    out.replace_range(i..end, "*");
                    at = i + 1;
                } else {
                    at = end;
                }
            }
        }
        out
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().and_then(|u| u.user_id.as_deref())
    }

    /// `update` merged into `self` (the stored endpoint, or a new one), with the server's
    /// fields set. `id` is the endpoint's id.
    pub fn merged(
        stored: Option<Endpoint>,
        update: Endpoint,
        app: &str,
        id: &str,
        now: &str,
        request_id: &str,
    ) -> Endpoint {
        let mut e = stored.unwrap_or_default();
        let Endpoint {
            address,
            attributes,
            channel_type,
            demographic,
            effective_date,
            endpoint_status,
            location,
            metrics,
            opt_out,
            user,
            request_id: request_id_given,
            ..
        } = update;
        replace(&mut e.address, address);
        replace(&mut e.channel_type, channel_type);
        replace(&mut e.opt_out, opt_out);
        merge_map(&mut e.attributes, attributes, Vec::is_empty);
        merge_map(&mut e.metrics, metrics, |_| false);
        if let Some(d) = demographic {
            let s = e.demographic.get_or_insert_with(Default::default);
            replace(&mut s.app_version, d.app_version);
            replace(&mut s.locale, d.locale);
            replace(&mut s.make, d.make);
            replace(&mut s.model, d.model);
            replace(&mut s.model_version, d.model_version);
            replace(&mut s.platform, d.platform);
            replace(&mut s.platform_version, d.platform_version);
            replace(&mut s.timezone, d.timezone);
        }
        if let Some(l) = location {
            let s = e.location.get_or_insert_with(Default::default);
            replace(&mut s.city, l.city);
            replace(&mut s.country, l.country);
            replace(&mut s.latitude, l.latitude);
            replace(&mut s.longitude, l.longitude);
            replace(&mut s.postal_code, l.postal_code);
            replace(&mut s.region, l.region);
        }
        if let Some(u) = user {
            let s = e.user.get_or_insert_with(Default::default);
            replace(&mut s.user_id, u.user_id);
            merge_map(&mut s.user_attributes, u.user_attributes, Vec::is_empty);
        }
        e.application_id = Some(app.to_string());
        e.id = Some(id.to_string());
        e.cohort_id = Some(cohort(id));
        if e.creation_date.is_none() {
            e.creation_date = Some(now.to_string());
        }
        e.effective_date = Some(effective_date.unwrap_or_else(|| now.to_string()));
        e.endpoint_status = Some(endpoint_status.unwrap_or_else(|| "ACTIVE".into()));
        if e.opt_out.is_none() {
            e.opt_out = Some("NONE".into());
        }
        e.request_id = Some(request_id_given.unwrap_or_else(|| request_id.to_string()));
        e
    }
}

fn replace<T>(slot: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *slot = new;
    }
}

fn merge_map<V>(
    slot: &mut Option<BTreeMap<String, V>>,
    new: Option<BTreeMap<String, V>>,
    removes: impl Fn(&V) -> bool,
) {
    let Some(new) = new else { return };
    let map = slot.get_or_insert_with(BTreeMap::new);
    for (k, v) in new {
        if removes(&v) {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
    if map.is_empty() {
        *slot = None;
    }
}

/// A stable cohort for an endpoint id, "0"–"99".
pub fn cohort(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(id.as_bytes());
    (u16::from_be_bytes([h[0], h[1]]) % 100).to_string()
}

pub fn check_id(field: &str, id: &str) -> Result<(), Invalid> {
    if id.is_empty()
        || id.len() > MAX_ID
        || id.chars().any(char::is_control)
        || id.contains('/')
        || id == "."
        || id == ".."
    {
        return Err(bad(
            field,
            format!("expected 1 to {MAX_ID} characters, without '/' or control characters, and not . or .. (it names a path segment)"),
        ));
    }
    Ok(())
}

fn check_name(prefix: &str, family: &str, name: &str) -> Result<(), Invalid> {
    let n = name.chars().count();
    if n == 0 || n > MAX_ATTRIBUTE_NAME {
        return Err(bad(
            &format!("{prefix}{family}"),
            format!(
                "an attribute name is 1 to {MAX_ATTRIBUTE_NAME} characters, found {:?} ({n})",
                crate::text::safe(name)
            ),
        ));
    }
    Ok(())
}

/// The id of an imported row without `Id`: derived from its channel and address, so the
/// same row imported again updates the same endpoint.
pub fn derived_id(channel: &str, address: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(address.as_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(json: &str) -> Endpoint {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn attributes_merge_per_key_and_an_empty_list_removes() {
        let stored = Endpoint::merged(
            None,
            ep(r#"{"ChannelType":"SMS","Address":"+1","Attributes":{"a":["1"],"b":["2"]}}"#),
            "app",
            "e1",
            "2026-12-01T00:00:00.000Z",
            "r1",
        );
        let next = Endpoint::merged(
            Some(stored.clone()),
            ep(r#"{"Attributes":{"a":["9","8"],"b":[]},"Location":{"Country":"CA"}}"#),
            "app",
            "e1",
            "2026-12-02T00:00:00.000Z",
            "r2",
        );
        let attrs = next.attributes.clone().unwrap();
        assert_eq!(
            attrs.get("a").unwrap(),
            &vec!["9".to_string(), "8".to_string()]
        );
        assert!(!attrs.contains_key("b"));
        assert_eq!(next.address.as_deref(), Some("+1"));
        assert_eq!(next.creation_date, stored.creation_date);
        assert_eq!(
            next.effective_date.as_deref(),
            Some("2026-12-02T00:00:00.000Z")
        );
        assert_eq!(next.request_id.as_deref(), Some("r2"));
        assert_eq!(next.cohort_id, stored.cohort_id);
    }

    #[test]
    fn limits_name_the_field() {
        let many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
        let e = Endpoint {
            attributes: Some([("k".to_string(), many)].into()),
            ..Default::default()
        };
        let err = e
            .check_request("Item[2].", Origin::Request { batch: false })
            .unwrap_err();
        assert_eq!(
            err.message,
            "Item[2].Attributes.k: at most 50 values per attribute, found 51"
        );
        let e =
            ep(r#"{"ChannelType":"SMS","Address":"+1","EffectiveDate":"2026-01-01T00:00:00Z"}"#);
        assert_eq!(
            e.check_request("", Origin::Import).unwrap_err().message,
            "EffectiveDate: an import may not set it"
        );
    }
}
