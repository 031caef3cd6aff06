//! The observed state as plain data: what the target holds, as the planner reads it. Filled
//! by `observe`, read by `plan`, so that the planner stays pure and knows nothing of I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifests::desired::AppKey;
use crate::model::{SegmentResponse, Tags};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveApp {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub tags: Tags,
    pub creation_date: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveCampaign {
    pub id: String,
    pub name: String,
    pub segment_id: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveJourney {
    pub id: String,
    pub name: String,
    pub state: String,
    pub segment_ids: Vec<String>,
}

/// One application as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSnapshot {
    pub app: LiveApp,
    pub segments: Vec<SegmentResponse>,
    pub campaigns: Vec<LiveCampaign>,
    pub journeys: Vec<LiveJourney>,
}

/// What an application of the plan looks like live.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveState {
    /// Found, with everything in it.
    Found(AppSnapshot),
    /// Declared by an Application manifest and not found: it will be created.
    Missing,
    /// It cannot be planned (an application id that does not exist, ...).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Every application the plan considers: those in the manifests, and those that hold
    /// segments managed by this owner.
    pub apps: BTreeMap<AppKey, LiveState>,
}

/// Whether a tag set marks an object as managed by `owner`, and under which name.
pub fn managed_name<'a>(tags: Option<&'a Tags>, owner: &str) -> Option<&'a str> {
    let tags = tags?;
    (tags.get(crate::TAG_MANAGED_BY).map(String::as_str) == Some(owner))
        .then(|| tags.get(crate::TAG_NAME).map(String::as_str))
        .flatten()
}

/// The order in which objects claiming the same name are preferred: the oldest first (by
/// creation date, then id). Every reader that must pick one of several claimants (the
/// planner keeping one duplicate, the executor finding what an unanswered create made)
/// uses this one rule, so that all of them, in every process, agree.
pub fn claim_order<'a>(creation_date: &'a str, id: &'a str) -> (&'a str, &'a str) {
    (creation_date, id)
}

/// Which target, and as which owner: what every plan, apply and status names, and what a
/// saved plan records so it is never applied elsewhere. Made from the settings by
/// `TargetInfo::of`, in [`crate::targets`] (it reads the environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `local`, `endpoint` or `aws`.
    pub kind: String,
    /// The database file, the endpoint URL (credentials in it removed), or the AWS endpoint.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A Customer Profiles target's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The account, once an ARN has shown it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub owner: String,
    /// The configuration file that named it (none: the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl TargetInfo {
    /// Whether two records name the same target and owner (the account counts when both
    /// know it).
    pub fn same_as(&self, other: &TargetInfo) -> bool {
        self.kind == other.kind
            && self.address == other.address
            && self.region == other.region
            && self.domain == other.domain
            && self.owner == other.owner
            && match (&self.account, &other.account) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// `the embedded local server over segments/.segmentctl/pinpoint.db`,
    /// `the endpoint http://pinpoint.internal:4566 (us-east-1)`,
    /// `Amazon Pinpoint in eu-west-1 (account 123456789012, profile prod)`.
    pub fn place(&self) -> String {
        let s = crate::text::safe;
        if let Some(domain) = &self.domain {
            return self.domain_place(domain);
        }
        match self.kind.as_str() {
            "local" => format!("the embedded local server over {}", s(&self.address)),
            "endpoint" => {
                let mut out = format!("the endpoint {}", s(&self.address));
                let extra: Vec<String> = self
                    .region
                    .iter()
                    .map(|r| s(r).into_owned())
                    .chain(self.account.iter().map(|a| format!("account {}", s(a))))
                    .collect();
                if !extra.is_empty() {
                    out.push_str(&format!(" ({})", extra.join(", ")));
                }
                out
            }
            _ => {
                let mut out = match &self.region {
                    Some(r) => format!("Amazon Pinpoint in {}", s(r)),
                    None => "Amazon Pinpoint".to_string(),
                };
                let extra: Vec<String> = self
                    .account
                    .iter()
                    .map(|a| format!("account {}", s(a)))
                    .chain(self.profile.iter().map(|p| format!("profile {}", s(p))))
                    .collect();
                if !extra.is_empty() {
                    out.push_str(&format!(" ({})", extra.join(", ")));
                }
                out
            }
        }
    }

    /// `the Customer Profiles domain shop at https://profile.eu-west-1.amazonaws.com
    /// (account 123456789012, profile prod)`, or `the domain segmentctl of the embedded local
    /// server over …`.
    fn domain_place(&self, domain: &str) -> String {
        let s = crate::text::safe;
        if self.kind == "local" {
            return format!(
                "the domain {} of the embedded local server over {}",
                s(domain),
                s(&self.address)
            );
        }
        let mut out = format!(
            "the Customer Profiles domain {} at {}",
            s(domain),
            s(&self.address)
        );
        let extra: Vec<String> = self
            .region
            .iter()
            .filter(|r| !self.address.contains(r.as_str()))
            .map(|r| s(r).into_owned())
            .chain(self.account.iter().map(|a| format!("account {}", s(a))))
            .chain(self.profile.iter().map(|p| format!("profile {}", s(p))))
            .collect();
        if !extra.is_empty() {
            out.push_str(&format!(" ({})", extra.join(", ")));
        }
        out
    }

    /// Where the target came from: `from segmentctl.yaml`, or why it is the default.
    pub fn from(&self) -> String {
        match &self.config {
            Some(f) => format!("from {}", crate::text::safe(f)),
            None => "no segmentctl.yaml found: the embedded default".to_string(),
        }
    }

    /// `Target: … as owner team-a (from segmentctl.yaml).`, the first line of every report.
    pub fn line(&self) -> String {
        format!(
            "Target: {} as owner {} ({}).",
            self.place(),
            crate::text::safe(&self.owner),
            self.from()
        )
    }

    /// Learns the account from an ARN the target returned
    /// (`arn:aws:mobiletargeting:REGION:ACCOUNT:…`).
    pub fn learn_account(&mut self, arn: &str) {
        if self.account.is_some() {
            return;
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if let [_, _, _, _, account, _] = parts.as_slice() {
            if !account.is_empty() {
                self.account = Some(account.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_read_from_an_arn() {
        let mut t = TargetInfo {
            kind: "aws".into(),
            address: String::new(),
            region: Some("eu-west-1".into()),
            profile: Some("prod".into()),
            domain: None,
            account: None,
            owner: "team-a".into(),
            config: Some("segmentctl.yaml".into()),
        };
        t.learn_account("arn:aws:mobiletargeting:eu-west-1:123456789012:apps/abc");
        assert_eq!(
            t.line(),
            "Target: Amazon Pinpoint in eu-west-1 (account 123456789012, profile prod) as owner team-a (from segmentctl.yaml)."
        );
    }
}
