//! Connect outbound campaigns (v2) on `segmentctl serve`, the calls the campaign guard of a
//! Customer Profiles target makes and the ones that make a campaign, driven by the real
//! `aws-sdk-connectcampaignsv2` client; every error received typed, with the service's
//! names, on both backends.

use aws_sdk_connectcampaignsv2::error::ProvideErrorMetadata;
use aws_sdk_connectcampaignsv2::types::{
    CampaignFilters, CampaignState, InstanceIdFilter, InstanceIdFilterOperator, Source,
};
use aws_sdk_connectcampaignsv2::Client;

use crate::util::{self, error_body, header, profiles_client, raw, TestServer};

/// A domain `shop` with the definitions `names`; their ARNs.
async fn definitions(t: &TestServer, names: &[&str]) -> Vec<String> {
    use aws_sdk_customerprofiles::types::{
        Dimension, Group, ProfileAttributes, ProfileDimension, SegmentGroup, StringDimensionType,
    };
    let cp = profiles_client(t);
    cp.create_domain()
        .domain_name("shop")
        .default_expiration_days(30)
        .send()
        .await
        .unwrap();
    let mut arns = Vec::new();
    for n in names {
        let dim = ProfileDimension::builder()
            .dimension_type(StringDimensionType::Inclusive)
            .values("Ada")
            .build()
            .unwrap();
        let groups = SegmentGroup::builder()
            .groups(
                Group::builder()
                    .dimensions(Dimension::ProfileAttributes(
                        ProfileAttributes::builder().first_name(dim).build(),
                    ))
                    .build(),
            )
            .build();
        let out = cp
            .create_segment_definition()
            .domain_name("shop")
            .segment_definition_name(*n)
            .display_name(*n)
            .segment_groups(groups)
            .send()
            .await
            .unwrap();
        arns.push(out.segment_definition_arn().unwrap().to_string());
    }
    arns
}

async fn create(c: &Client, name: &str, instance: &str, arn: &str) -> String {
    c.create_campaign()
        .name(name)
        .connect_instance_id(instance)
        .source(Source::CustomerProfilesSegmentArn(arn.into()))
        .tags("team", "growth")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateCampaign: {:?}", e.into_service_error()))
        .id()
        .unwrap()
        .to_string()
}

async fn state(c: &Client, id: &str) -> CampaignState {
    c.get_campaign_state()
        .id(id)
        .send()
        .await
        .unwrap()
        .state()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_are_created_described_listed_run_and_re_pointed() {
    let t = util::start().await;
    let arns = definitions(&t, &["vip", "gold"]).await;
    let c = util::campaigns_client(&t);
    let spring = create(&c, "spring", "instance-1", &arns[0]).await;
    let summer = create(&c, "summer", "instance-1", &arns[1]).await;
    let other = create(&c, "other", "instance-2", &arns[1]).await;

    let got = c.describe_campaign().id(&spring).send().await.unwrap();
    let campaign = got.campaign().unwrap();
    assert_eq!(campaign.name(), "spring");
    assert_eq!(campaign.connect_instance_id(), "instance-1");
    assert_eq!(
        campaign.arn(),
        format!("arn:aws:connect-campaigns:us-east-1:000000000000:campaign/{spring}")
    );
    assert_eq!(
        campaign
            .source()
            .unwrap()
            .as_customer_profiles_segment_arn()
            .unwrap(),
        &arns[0]
    );
    assert_eq!(campaign.tags().unwrap()["team"], "growth");
    assert_eq!(state(&c, &spring).await, CampaignState::Initialized);

    // Pages of one, in creation order; a filter on the instance.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_campaigns()
            .max_results(1)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.campaign_summary_list().len() <= 1);
        seen.extend(
            page.campaign_summary_list()
                .iter()
                .map(|s| s.name().to_string()),
        );
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["spring", "summer", "other"]);
    let filtered = c
        .list_campaigns()
        .filters(
            CampaignFilters::builder()
                .instance_id_filter(
                    InstanceIdFilter::builder()
                        .value("instance-2")
                        .operator(InstanceIdFilterOperator::Eq)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = filtered
        .campaign_summary_list()
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(ids, [other.as_str()]);

    // The states: start, pause, resume, stop; a change from the wrong state is a 409.
    c.start_campaign().id(&spring).send().await.unwrap();
    c.pause_campaign().id(&spring).send().await.unwrap();
    assert_eq!(state(&c, &spring).await, CampaignState::Paused);
    let e = c
        .pause_campaign()
        .id(&spring)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_conflict_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some(format!("Campaign {spring} is Paused: PauseCampaign needs it Running").as_str())
    );
    c.resume_campaign().id(&spring).send().await.unwrap();
    assert_eq!(state(&c, &spring).await, CampaignState::Running);
    c.stop_campaign().id(&summer).send().await.unwrap();

    let batch = c
        .get_campaign_state_batch()
        .campaign_ids(&spring)
        .campaign_ids(&summer)
        .campaign_ids("missing-1")
        .send()
        .await
        .unwrap();
    let states: Vec<(String, String)> = batch
        .successful_requests()
        .iter()
        .map(|s| {
            (
                s.campaign_id().unwrap().to_string(),
                s.state().unwrap().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (spring.clone(), "Running".to_string()),
            (summer.clone(), "Stopped".to_string())
        ]
    );
    assert_eq!(batch.failed_requests().len(), 1);
    assert_eq!(batch.failed_requests()[0].campaign_id(), Some("missing-1"));

    // Re-pointed while running; an ended campaign is not.
    c.update_campaign_source()
        .id(&spring)
        .source(Source::CustomerProfilesSegmentArn(arns[1].clone()))
        .send()
        .await
        .unwrap();
    let got = c.describe_campaign().id(&spring).send().await.unwrap();
    assert_eq!(
        got.campaign()
            .unwrap()
            .source()
            .unwrap()
            .as_customer_profiles_segment_arn()
            .unwrap(),
        &arns[1]
    );
    let e = c
        .update_campaign_source()
        .id(&summer)
        .source(Source::CustomerProfilesSegmentArn(arns[0].clone()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_conflict_exception(), "{e:?}");

    c.delete_campaign().id(&other).send().await.unwrap();
    let e = c
        .describe_campaign()
        .id(&other)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some(format!("Campaign {other} does not exist").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_must_be_a_definition_of_this_server_and_errors_carry_the_service_names() {
    let t = util::start().await;
    let arns = definitions(&t, &["vip"]).await;
    let c = util::campaigns_client(&t);
    for (arn, why) in [
        (
            arns[0].replace("/vip", "/gone"),
            "a definition that does not exist",
        ),
        (
            arns[0].replace("000000000000", "111111111111"),
            "another account",
        ),
        (
            "arn:aws:profile:us-east-1:000000000000:domains/shop".to_string(),
            "a domain",
        ),
    ] {
        let e = c
            .create_campaign()
            .name("n")
            .connect_instance_id("i")
            .source(Source::CustomerProfilesSegmentArn(arn.clone()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_validation_exception(), "{why}: {e:?}");
        assert_eq!(
            e.message(),
            Some(format!("source.customerProfilesSegmentArn: {arn} is not a segment definition of this server").as_str()),
            "{why}"
        );
    }
    let e = c
        .create_campaign()
        .name("")
        .connect_instance_id("i")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("name: must be 1 to 127 characters long, found 0")
    );
    let e = c
        .get_campaign_state_batch()
        .set_campaign_ids(Some((0..26).map(|i| format!("c{i}")).collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");

    // On the wire: the type header and the `{"Message","RequestID"}` body; a request signed
    // for another service is refused with this service's name.
    let (status, headers, body) = raw(
        t.addr(),
        "GET /v2/campaigns/abc HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    assert!(error_body(&body)["RequestID"].is_string(), "{body}");
    let request = util::scoped_to("profile", "/v2/campaigns/abc");
    let (status, _, body) = raw(t.addr(), &request).await;
    assert_eq!(status, 403);
    assert_eq!(
        error_body(&body)["Message"],
        "Credential should be scoped to correct service: 'connect-campaigns'"
    );
}

/// CreateCampaign refuses the members that run a campaign (schedule, channels, limits): kept
/// as sent, one the model would refuse (a string where it has an object, a word where it
/// has a number) would make DescribeCampaign and ListCampaigns unreadable to the SDK, and
/// with them every plan's campaign guard on this server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_sdk_could_not_read_back_is_refused_and_campaigns_stay_readable() {
    let t = util::start_with(|c| c.auth = segmentctl::server::Auth::None).await;
    for member in [
        r#""schedule":"soon""#,
        r#""channelSubtypeConfig":[1]"#,
        r#""entryLimitsConfig":{"maxEntryCount":"many"}"#,
        // Well formed or not: what runs a campaign is not kept (and so never answered).
        r#""schedule":{"startTime":"2026-12-01T00:00:00Z","endTime":"2026-12-31T00:00:00Z"}"#,
        r#""communicationTimeConfig":{}"#,
        r#""communicationLimitsOverride":{}"#,
    ] {
        let body = format!(r#"{{"name":"n","connectInstanceId":"i",{member}}}"#);
        let request = format!(
            "PUT /v2/campaigns HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, headers, text) = raw(t.addr(), &request).await;
        assert_eq!(status, 400, "{member}: {text}");
        assert_eq!(
            header(&headers, "x-amzn-errortype"),
            Some("ValidationException"),
            "{member}"
        );
        assert!(
            error_body(&text)["Message"]
                .as_str()
                .unwrap()
                .contains("not implemented by this server"),
            "{member}: {text}"
        );
    }
    let c = util::campaigns_client(&t);
    let listed = c.list_campaigns().send().await;
    assert!(listed.is_ok(), "ListCampaigns reads back: {listed:?}");
}
