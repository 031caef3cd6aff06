//! The campaign guard's reads and its one write, through `aws-sdk-connectcampaignsv2`.
//!
//! A campaign's summary (ListCampaigns) carries no source, so each campaign is described
//! (read together, paced by the client); states come from GetCampaignStateBatch, 25 at a
//! time. A campaign deleted between the list and the read is not there.

use std::collections::BTreeMap;

use aws_sdk_connectcampaignsv2::types::Source;
use aws_sdk_connectcampaignsv2::Client;

use super::{LiveCampaign, ProfilesError, Result};
use crate::model::campaigns::{CampaignState, MAX_PAGE, MAX_STATE_BATCH};
use crate::targets::pacing::{Api, Class};
use crate::targets::pinpoint::join_all;

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
    }
    Ok(sourced
        .into_iter()
        .filter_map(|(id, name, arn)| {
            // Not in the answer: deleted since it was described.
            let state = states.get(&id)?;
            Some(LiveCampaign {
                // A state this build does not know is taken as in use: the guard errs on
                // the side of keeping a segment.
                state: CampaignState::parse(state).unwrap_or(CampaignState::Running),
                id,
                name,
                segment_arn: arn,
            })
        })
        .collect())
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
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
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
