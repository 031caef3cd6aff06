//! Endpoint records gathered into Customer Profiles profiles, as `convert`'s mapping reads
//! them, so a converted definition can be counted over the same people its Pinpoint segment
//! was (`convert --endpoints`). Pure: lines in, profiles out.
//!
//! One profile per `User.UserId` (an endpoint without one is a profile of its own, its id
//! `endpoint:<Id>`):
//! - `UserAttributes.k` → `Attributes.k` (the first endpoint's that has it);
//! - endpoint `Attributes.k`, and the Demographic fields `AppVersion`, `Make`, `Model`,
//!   `Platform`, and `ChannelType` as `Channel` → `Attributes.k`: the distinct values of all
//!   the user's endpoints (a user attribute of the same name wins);
//! - `Metrics.k` → `Attributes.k`: the largest value among the endpoints, as a number text;
//! - `Location.Country` → `Address.Country`: the first endpoint's that has one;
//! - an imported segment's members (an endpoint id or a user id it lists) carry its
//!   membership attribute `"true"`.
//!
//! A value alone is written alone; several as a JSON array ([`crate::model::profiles::encode_list`]),
//! which LIST_CONTAINS reads as a list.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::audience::evaluate::Members;

#[derive(Default)]
struct Person {
    ids: Vec<String>,
    user: BTreeMap<String, Vec<String>>,
    lists: BTreeMap<String, BTreeSet<String>>,
    metrics: BTreeMap<String, f64>,
    country: Option<String>,
}

/// What reading the endpoints found.
pub struct Gathered {
    /// One JSON profile a line.
    pub profiles: Vec<String>,
    pub endpoints: u64,
    /// Lines that are not endpoint records (not JSON objects).
    pub rejected: u64,
}

/// How profiles are written: a metric's number text, and the imported segments' members
/// with the attribute that marks them.
pub struct Mapping<'m> {
    pub number_text: fn(f64) -> String,
    pub imported: Vec<(String, &'m Members)>,
}

/// Gathers the endpoint records of `lines` into profiles, a line at a time (a profile is
/// kept per user, never the file).
pub fn gather<L: AsRef<str>>(lines: impl Iterator<Item = L>, mapping: &Mapping<'_>) -> Gathered {
    let mut people: BTreeMap<String, Person> = BTreeMap::new();
    let (mut endpoints, mut rejected) = (0, 0);
    for line in lines {
        let line = line.as_ref();
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(e)) = serde_json::from_str::<Value>(line) else {
            rejected += 1;
            continue;
        };
        endpoints += 1;
        let text = |v: &Value| v.as_str().map(str::to_string);
        let key = match e.get("User").and_then(|u| u.get("UserId")).and_then(text) {
            Some(user) => user,
            None => format!(
                "endpoint:{}",
                e.get("Id").and_then(text).unwrap_or_default()
            ),
        };
        let p = people.entry(key).or_default();
        if let Some(id) = e.get("Id").and_then(text) {
            p.ids.push(id);
        }
        if let Some(Value::Object(ua)) = e.get("User").and_then(|u| u.get("UserAttributes")) {
            for (k, v) in ua {
                let values: Vec<String> = strings(v);
                p.user.entry(k.clone()).or_insert(values);
            }
        }
        if let Some(Value::Object(a)) = e.get("Attributes") {
            for (k, v) in a {
                p.lists.entry(k.clone()).or_default().extend(strings(v));
            }
        }
        if let Some(Value::Object(d)) = e.get("Demographic") {
            for field in ["AppVersion", "Make", "Model", "Platform"] {
                if let Some(v) = d.get(field).and_then(text) {
                    p.lists.entry(field.into()).or_default().insert(v);
                }
            }
        }
        if let Some(c) = e.get("ChannelType").and_then(text) {
            p.lists.entry("Channel".into()).or_default().insert(c);
        }
        if let Some(Value::Object(m)) = e.get("Metrics") {
            for (k, v) in m {
                if let Some(n) = v.as_f64() {
                    let top = p.metrics.entry(k.clone()).or_insert(n);
                    *top = top.max(n);
                }
            }
        }
        if p.country.is_none() {
            p.country = e
                .get("Location")
                .and_then(|l| l.get("Country"))
                .and_then(text)
                .filter(|c| !c.is_empty());
        }
    }
    let profiles = people
        .into_iter()
        .map(|(id, p)| profile(&id, p, mapping))
        .collect();
    Gathered {
        profiles,
        endpoints,
        rejected,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A list as one attribute value: alone when it is one, else a JSON array.
fn one_value(values: &[String]) -> Option<String> {
    match values {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(crate::model::profiles::encode_list(many)),
    }
}

fn profile(id: &str, p: Person, mapping: &Mapping<'_>) -> String {
    let mut attributes = Map::new();
    for (k, n) in p.metrics {
        attributes.insert(k, json!((mapping.number_text)(n)));
    }
    for (k, set) in p.lists {
        let values: Vec<String> = set.into_iter().collect();
        if let Some(v) = one_value(&values) {
            attributes.insert(k, json!(v));
        }
    }
    for (k, values) in p.user {
        if let Some(v) = one_value(&values) {
            attributes.insert(k, json!(v));
        }
    }
    for (key, members) in &mapping.imported {
        let member =
            members.users.contains(id) || p.ids.iter().any(|e| members.ids.contains(e.as_str()));
        if member {
            attributes.insert(key.clone(), json!("true"));
        }
    }
    let mut out = Map::new();
    out.insert("ProfileId".into(), json!(id));
    if let Some(c) = p.country {
        out.insert("Address".into(), json!({ "Country": c }));
    }
    if !attributes.is_empty() {
        out.insert("Attributes".into(), Value::Object(attributes));
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_endpoints_make_one_profile_and_an_endpoint_without_a_user_its_own() {
        let lines = [
            r#"{"Id":"e1","ChannelType":"APNS","Demographic":{"Platform":"iOS"},"Location":{"Country":"US"},"Attributes":{"plan":["pro"]},"Metrics":{"spend":5},"User":{"UserId":"u1","UserAttributes":{"tier":["gold","vip"]}}}"#,
            r#"{"Id":"e2","ChannelType":"SMS","Demographic":{"Platform":"Android"},"Location":{"Country":"CA"},"Attributes":{"plan":["pro"]},"Metrics":{"spend":12.5},"User":{"UserId":"u1"}}"#,
            r#"{"Id":"e3","ChannelType":"EMAIL"}"#,
            "not json",
        ];
        let vip = Members {
            ids: ["e3".into()].into_iter().collect(),
            users: Default::default(),
        };
        let mapping = Mapping {
            number_text: |n| format!("{n}"),
            imported: vec![("pinpoint_import_vip".into(), &vip)],
        };
        let g = gather(lines.iter().copied(), &mapping);
        assert_eq!((g.endpoints, g.rejected), (3, 1));
        let profiles: Vec<Value> = g
            .profiles
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        assert_eq!(
            profiles[0],
            json!({"ProfileId": "endpoint:e3", "Attributes": {"Channel": "EMAIL", "pinpoint_import_vip": "true"}})
        );
        assert_eq!(
            profiles[1],
            json!({
                "ProfileId": "u1",
                "Address": {"Country": "US"},
                "Attributes": {
                    "Channel": "[\"APNS\",\"SMS\"]",
                    "Platform": "[\"Android\",\"iOS\"]",
                    "plan": "pro",
                    "spend": "12.5",
                    "tier": "[\"gold\",\"vip\"]"
                }
            })
        );
    }
}
