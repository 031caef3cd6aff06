//! The campaign guard's reads and its one write, through `aws-sdk-connectcampaignsv2`.
//!
//! A campaign's summary (ListCampaigns) carries no source, so each campaign is described
//! (read together, paced by the client); states come from GetCampaignStateBatch, 25 at a
//! time. A campaign deleted between the list and the read is not there.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_connectcampaignsv2::types::{GetCampaignStateBatchFailureCode, Source};
use aws_sdk_connectcampaignsv2::Client;

use super::{repeated_token, LiveCampaign, ProfilesError, Result};
use crate::model::campaigns::{CampaignState, MAX_PAGE, MAX_STATE_BATCH};
use crate::targets::pacing::{Api, CallError, Class, Outcome};
use crate::targets::pinpoint::join_all;

/// What to tell the user when a campaign read failed (None: `c` is not one): only a refusal
/// is the credentials' doing (an answer the SDK cannot read, a throttle, the network are not).
pub fn read_message(c: &crate::targets::pacing::CallError) -> Option<String> {
    if !matches!(
        c.operation,
        "ListCampaigns" | "DescribeCampaign" | "GetCampaignStateBatch"
    ) {
        return None;
    }
    let what = if c.is_forbidden() {
        ": the credentials need connect-campaigns:ListCampaigns, DescribeCampaign and GetCampaignStateBatch"
    } else {
        ""
    };
    Some(format!(
        "cannot read the Connect outbound campaigns of the target's account and region, which the campaign guard checks before any definition is deleted ({}: {}){what}",
        c.operation, c.message
    ))
}

/// Every campaign whose source is a segment definition, with its state.
pub async fn read(api: &Api<Client>) -> Result<Vec<LiveCampaign>> {
    let ids = list(api).await?;
    let described = join_all(ids.iter().map(|id| describe(api, id)).collect()).await;
    let mut sourced: Vec<(String, String, String)> = Vec::new();
    for got in described {
        if let Some(c) = got? {
            sourced.push(c);
        }
    }
    let mut states = BTreeMap::new();
    let mut gone = BTreeSet::new();
    for chunk in sourced.chunks(MAX_STATE_BATCH) {
        let ids: Vec<String> = chunk.iter().map(|(id, _, _)| id.clone()).collect();
        let c = &api.client;
        let out = api
            .call("GetCampaignStateBatch", Class::Other, || {
                c.get_campaign_state_batch()
                    .set_campaign_ids(Some(ids.clone()))
                    .send()
            })
            .await
            .map_err(ProfilesError::from)?;
        for ok in out.successful_requests() {
            if let (Some(id), Some(state)) = (ok.campaign_id(), ok.state()) {
                states.insert(id.to_string(), state.as_str().to_string());
            }
        }
        for failed in out.failed_requests() {
            if let (Some(id), Some(GetCampaignStateBatchFailureCode::ResourceNotFound)) =
                (failed.campaign_id(), failed.failure_code())
            {
                gone.insert(id.to_string());
            }
        }
    }
    with_states(sourced, &states, &gone)
}

/// The described campaigns with their states. One deleted since it was described (its state
/// answered `ResourceNotFound`) is not there; one whose state was not answered otherwise
/// (`UnknownError`, left out) is an error: the guard cannot tell whether it is in use, and
/// never takes a campaign it cannot read as one that reads nothing.
fn with_states(
    sourced: Vec<(String, String, String)>,
    states: &BTreeMap<String, String>,
    gone: &BTreeSet<String>,
) -> Result<Vec<LiveCampaign>> {
    let mut out = Vec::new();
    for (id, name, arn) in sourced {
        let Some(state) = states.get(&id) else {
            if gone.contains(&id) {
                continue;
            }
            return Err(ProfilesError::Call(CallError {
                operation: "GetCampaignStateBatch",
                code: "UnknownError".into(),
                status: None,
                message: format!(
                    "the state of the campaign {} (id {}) was not answered",
                    crate::text::safe(&name),
                    crate::text::safe(&id)
                ),
                outcome: Outcome::NotApplied,
                retryable: false,
            }));
        };
        out.push(LiveCampaign {
            // A state this build does not know is taken as in use: the guard errs on the
            // side of keeping a segment.
            state: CampaignState::parse(state).unwrap_or(CampaignState::Running),
            id,
            name,
            segment_arn: arn,
        });
    }
    Ok(out)
}

/// Every campaign's id, every page.
async fn list(api: &Api<Client>) -> Result<Vec<String>> {
    let c = &api.client;
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api
            .call("ListCampaigns", Class::Other, || {
                c.list_campaigns()
                    .max_results(MAX_PAGE as i32)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
        ids.extend(
            page.campaign_summary_list()
                .iter()
                .map(|s| s.id().to_string()),
        );
        match page.next_token() {
            Some(t) if Some(t) == token.as_deref() => return Err(repeated_token("ListCampaigns")),
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(ids)
}

/// The campaign's id, name and segment ARN, when its source is a segment definition.
async fn describe(api: &Api<Client>, id: &str) -> Result<Option<(String, String, String)>> {
    let c = &api.client;
    let out = match api
        .call("DescribeCampaign", Class::Other, || {
            c.describe_campaign().id(id).send()
        })
        .await
    {
        Ok(out) => out,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(campaign) = out.campaign() else {
        return Ok(None);
    };
    Ok(campaign
        .source()
        .and_then(|s| s.as_customer_profiles_segment_arn().ok())
        .map(|arn| {
            (
                campaign.id().to_string(),
                campaign.name().to_string(),
                arn.clone(),
            )
        }))
}

/// Points campaign `id` at the segment definition `arn`. Safe to repeat.
pub async fn repoint(api: &Api<Client>, id: &str, arn: &str) -> Result<()> {
    let c = &api.client;
    api.call("UpdateCampaignSource", Class::SegmentWrite, || {
        c.update_campaign_source()
            .id(id)
            .source(Source::CustomerProfilesSegmentArn(arn.to_string()))
            .send()
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sourced(ids: &[&str]) -> Vec<(String, String, String)> {
        ids.iter()
            .map(|id| (id.to_string(), format!("c-{id}"), format!("arn:{id}")))
            .collect()
    }

    #[test]
    fn a_campaign_whose_state_is_not_answered_is_an_error_and_a_deleted_one_is_gone() {
        let states: BTreeMap<String, String> = [("a".to_string(), "Paused".to_string())].into();
        let gone: BTreeSet<String> = ["b".to_string()].into();
        let got = with_states(sourced(&["a", "b"]), &states, &gone).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].id.as_str(), got[0].state),
            ("a", CampaignState::Paused)
        );
        // `c` failed with UnknownError (or was left out): it may be running on its segment.
        let e = with_states(sourced(&["a", "b", "c"]), &states, &gone).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GetCampaignStateBatch: the state of the campaign c-c (id c) was not answered"
        );
    }
}
