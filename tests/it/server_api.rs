//! Every operation of the server, driven by the real aws-sdk-pinpoint client.

use aws_sdk_pinpoint::types::{
    AttributeDimension, AttributeType, CampaignStatus, GpsCoordinates, GpsPointDimension,
    JourneyStateRequest, Schedule, SegmentCondition, SegmentDimensions, SegmentGroup,
    SegmentGroupList, SegmentLocation, SegmentReference, SetDimension, StartCondition, State,
    TagsModel, WriteCampaignRequest, WriteJourneyRequest, WriteSegmentRequest,
};

use crate::util::{self, create_segment, named};

fn is_iso_millis(s: &str) -> bool {
    // 2026-11-28T20:46:54.123Z
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[10] == b'T'
        && s.as_bytes()[19] == b'.'
        && segmentctl::model::validate::parse_instant(s).is_some()
}

#[tokio::test]
async fn apps_are_created_listed_in_pages_and_deleted_with_everything_in_them() {
    let t = util::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(t.app(&format!("app-{i}")).await);
    }
    let got = t
        .client
        .get_app()
        .application_id(&ids[0])
        .send()
        .await
        .unwrap();
    let app = got.application_response.unwrap();
    assert_eq!(app.name.as_deref(), Some("app-0"));
    assert_eq!(
        app.arn.as_deref(),
        Some(
            format!(
                "arn:aws:mobiletargeting:us-east-1:000000000000:apps/{}",
                ids[0]
            )
            .as_str()
        )
    );
    assert!(is_iso_millis(app.creation_date.as_deref().unwrap()));
    assert_eq!(ids[0].len(), 32);
    assert!(ids[0]
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    // Pages of two: 2 + 2 + 1, in creation order, the last page without NextToken.
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = t
            .client
            .get_apps()
            .page_size("2")
            .set_token(token.clone())
            .send()
            .await
            .unwrap()
            .applications_response
            .unwrap();
        pages += 1;
        seen.extend(
            page.item
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.id.unwrap()),
        );
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let seg = create_segment(&t.client, &ids[1], named("doomed")).await;
    t.client
        .delete_app()
        .application_id(&ids[1])
        .send()
        .await
        .unwrap();
    let err = t
        .client
        .get_segment()
        .application_id(&ids[1])
        .segment_id(&seg)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
}

fn vip_request() -> WriteSegmentRequest {
    WriteSegmentRequest::builder()
        .name("VIP")
        .dimensions(
            SegmentDimensions::builder()
                .attributes(
                    "signup",
                    AttributeDimension::builder()
                        .attribute_type(AttributeType::Between)
                        .values("2026-01-01T00:00:00Z")
                        .values("2026-02-01T00:00:00Z")
                        .build(),
                )
                .location(
                    SegmentLocation::builder()
                        .country(SetDimension::builder().values("US").values("CA").build())
                        .gps_point(
                            GpsPointDimension::builder()
                                .coordinates(
                                    GpsCoordinates::builder()
                                        .latitude(47.6)
                                        .longitude(-122.3)
                                        .build(),
                                )
                                .range_in_kilometers(25.0)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .tags("team", "crm")
        .build()
}

/// Updates of one segment sent at once (on PostgreSQL, those that wait together are written
/// in one transaction) each make a version of their own: 2 to 33 without a gap or a double,
/// each answer what GetSegmentVersion then reads at its version, with its own definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_one_segment_at_once_each_make_their_own_version() {
    let t = util::start().await;
    let app = t.app("together").await;
    let seg = create_segment(&t.client, &app, named("v1")).await;
    let updates: Vec<_> = (0..32)
        .map(|i| {
            let (c, app, seg) = (t.client.clone(), app.clone(), seg.clone());
            tokio::spawn(async move {
                let name = format!("u{i}");
                let out = c
                    .update_segment()
                    .application_id(&app)
                    .segment_id(&seg)
                    .write_segment_request(named(&name))
                    .send()
                    .await
                    .expect("every update goes through");
                (name, out.segment_response.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for u in updates {
        answers.push(u.await.unwrap());
    }
    let mut versions: Vec<i32> = answers.iter().map(|(_, r)| r.version.unwrap()).collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=33).collect::<Vec<_>>());
    for (name, answer) in &answers {
        assert_eq!(answer.name.as_deref(), Some(name.as_str()));
        let stored = t
            .client
            .get_segment_version()
            .application_id(&app)
            .segment_id(&seg)
            .version(answer.version.unwrap().to_string())
            .send()
            .await
            .unwrap()
            .segment_response
            .unwrap();
        assert_eq!(&stored, answer, "version {:?}", answer.version);
    }
}

#[tokio::test]
async fn a_segment_keeps_every_version_and_update_ignores_tags() {
    let t = util::start().await;
    let app = t.app("segments").await;
    let created = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(vip_request())
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    let id = created.id.clone().unwrap();
    assert_eq!(created.version, Some(1));
    assert_eq!(
        created.segment_type.as_ref().map(|s| s.as_str()),
        Some("DIMENSIONAL")
    );
    assert_eq!(
        created.arn.as_deref(),
        Some(
            format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{app}/segments/{id}")
                .as_str()
        )
    );
    assert_eq!(
        created
            .tags
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("crm")
    );
    assert!(is_iso_millis(created.creation_date.as_deref().unwrap()));
    let gps = created
        .dimensions
        .as_ref()
        .unwrap()
        .location
        .as_ref()
        .unwrap()
        .gps_point
        .as_ref()
        .unwrap();
    assert_eq!(gps.range_in_kilometers, Some(25.0));

    let updated = t
        .client
        .update_segment()
        .application_id(&app)
        .segment_id(&id)
        .write_segment_request(
            WriteSegmentRequest::builder()
                .name("VIP (EU)")
                .dimensions(
                    SegmentDimensions::builder()
                        .location(
                            SegmentLocation::builder()
                                .country(SetDimension::builder().values("FR").build())
                                .build(),
                        )
                        .build(),
                )
                .tags("team", "ignored-on-update")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!(updated.version, Some(2));
    assert_eq!(updated.name.as_deref(), Some("VIP (EU)"));
    assert_eq!(
        updated
            .tags
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("crm")
    );
    assert_eq!(updated.creation_date, created.creation_date);

    let v1 = t
        .client
        .get_segment_version()
        .application_id(&app)
        .segment_id(&id)
        .version("1")
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!(v1.name.as_deref(), Some("VIP"));
    assert_eq!(v1.version, Some(1));

    let current = t
        .client
        .get_segment()
        .application_id(&app)
        .segment_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(current.segment_response.unwrap().version, Some(2));

    let versions = t
        .client
        .get_segment_versions()
        .application_id(&app)
        .segment_id(&id)
        .send()
        .await
        .unwrap()
        .segments_response
        .unwrap();
    let names: Vec<_> = versions
        .item
        .unwrap()
        .into_iter()
        .map(|s| (s.version.unwrap(), s.name.unwrap()))
        .collect();
    assert_eq!(names, [(1, "VIP".to_string()), (2, "VIP (EU)".to_string())]);

    let err = t
        .client
        .get_segment_version()
        .application_id(&app)
        .segment_id(&id)
        .version("3")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");

    let deleted = t
        .client
        .delete_segment()
        .application_id(&app)
        .segment_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.segment_response.unwrap().id.as_deref(),
        Some(id.as_str())
    );
    let err = t
        .client
        .get_segment()
        .application_id(&app)
        .segment_id(&id)
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
    assert!(err.meta().message().unwrap().contains(&id));
}

#[tokio::test]
async fn get_segments_pages_in_creation_order_and_groups_reference_existing_segments() {
    let t = util::start().await;
    let app = t.app("paging").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(create_segment(&t.client, &app, named(&format!("s{i}"))).await);
    }
    let group = WriteSegmentRequest::builder()
        .name("built on two")
        .segment_groups(
            SegmentGroupList::builder()
                .include(aws_sdk_pinpoint::types::Include::All)
                .groups(
                    SegmentGroup::builder()
                        .source_segments(SegmentReference::builder().id(&ids[0]).build())
                        .source_segments(SegmentReference::builder().id(&ids[1]).version(1).build())
                        .source_type(aws_sdk_pinpoint::types::SourceType::Any)
                        .build(),
                )
                .build(),
        )
        .build();
    ids.push(create_segment(&t.client, &app, group).await);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = t
            .client
            .get_segments()
            .application_id(&app)
            .page_size("3")
            .set_token(token)
            .send()
            .await
            .unwrap()
            .segments_response
            .unwrap();
        let items = page.item.unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.into_iter().map(|s| s.id.unwrap()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids);

    let bad = WriteSegmentRequest::builder()
        .segment_groups(
            SegmentGroupList::builder()
                .groups(
                    SegmentGroup::builder()
                        .source_segments(
                            SegmentReference::builder()
                                .id("0123456789abcdef0123456789abcdef")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let err = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(bad)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert_eq!(
        err.meta().message(),
        Some(format!(
            "SegmentGroups.Groups[0].SourceSegments[0].Id: segment 0123456789abcdef0123456789abcdef does not exist in application {app}"
        ).as_str())
    );
}

#[tokio::test]
async fn deleting_a_segment_turns_the_campaigns_using_it_to_deleted() {
    let t = util::start().await;
    let app = t.app("campaigns").await;
    let seg = create_segment(&t.client, &app, named("audience")).await;
    let other = create_segment(&t.client, &app, named("other")).await;

    let campaign = |name: &str, segment: &str| {
        WriteCampaignRequest::builder()
            .name(name)
            .segment_id(segment)
            .build()
    };
    let created = t
        .client
        .create_campaign()
        .application_id(&app)
        .write_campaign_request(campaign("Black Friday", &seg))
        .send()
        .await
        .unwrap()
        .campaign_response
        .unwrap();
    let cid = created.id.clone().unwrap();
    assert_eq!(created.segment_version, Some(1));
    assert_eq!(
        created.state.unwrap().campaign_status,
        Some(CampaignStatus::Scheduled)
    );

    let paused = t
        .client
        .create_campaign()
        .application_id(&app)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Paused")
                .segment_id(&other)
                .is_paused(true)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .campaign_response
        .unwrap();
    assert_eq!(
        paused.state.unwrap().campaign_status,
        Some(CampaignStatus::Paused)
    );

    let ended = t
        .client
        .create_campaign()
        .application_id(&app)
        .write_campaign_request(
            WriteCampaignRequest::builder()
                .name("Summer")
                .segment_id(&other)
                .schedule(
                    Schedule::builder()
                        .start_time("2026-06-01T00:00:00Z")
                        .end_time("2026-07-01T00:00:00Z")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .campaign_response
        .unwrap();
    assert_eq!(
        ended.state.unwrap().campaign_status,
        Some(CampaignStatus::Completed)
    );

    let updated = t
        .client
        .update_campaign()
        .application_id(&app)
        .campaign_id(&cid)
        .write_campaign_request(campaign("Black Friday 2026", &seg))
        .send()
        .await
        .unwrap()
        .campaign_response
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("Black Friday 2026"));
    assert_eq!(updated.version, Some(2));

    let listed = t
        .client
        .get_campaigns()
        .application_id(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.campaigns_response.unwrap().item.unwrap().len(), 3);

    t.client
        .delete_segment()
        .application_id(&app)
        .segment_id(&seg)
        .send()
        .await
        .unwrap();
    let after = t
        .client
        .get_campaign()
        .application_id(&app)
        .campaign_id(&cid)
        .send()
        .await
        .unwrap()
        .campaign_response
        .unwrap();
    assert_eq!(
        after.state.unwrap().campaign_status,
        Some(CampaignStatus::Deleted)
    );

    t.client
        .delete_campaign()
        .application_id(&app)
        .campaign_id(&cid)
        .send()
        .await
        .unwrap();
    let err = t
        .client
        .get_campaign()
        .application_id(&app)
        .campaign_id(&cid)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn journeys_keep_their_definition_and_move_between_states() {
    let t = util::start().await;
    let app = t.app("journeys").await;
    let seg = create_segment(&t.client, &app, named("entrants")).await;
    let journey = WriteJourneyRequest::builder()
        .name("Onboarding")
        .start_condition(
            StartCondition::builder()
                .segment_start_condition(SegmentCondition::builder().segment_id(&seg).build())
                .build(),
        )
        .build();
    let created = t
        .client
        .create_journey()
        .application_id(&app)
        .write_journey_request(journey)
        .send()
        .await
        .unwrap()
        .journey_response
        .unwrap();
    let jid = created.id.clone().unwrap();
    assert_eq!(created.state, Some(State::Draft));
    assert_eq!(
        created
            .start_condition
            .unwrap()
            .segment_start_condition
            .unwrap()
            .segment_id
            .as_deref(),
        Some(seg.as_str())
    );

    let updated = t
        .client
        .update_journey()
        .application_id(&app)
        .journey_id(&jid)
        .write_journey_request(
            WriteJourneyRequest::builder()
                .name("Onboarding v2")
                .state(State::Active)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .journey_response
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("Onboarding v2"));
    assert_eq!(updated.state, Some(State::Active));

    let err = t
        .client
        .update_journey()
        .application_id(&app)
        .journey_id(&jid)
        .write_journey_request(WriteJourneyRequest::builder().name("too late").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.is_conflict_exception(),
        "an ACTIVE journey cannot be edited: {err:?}"
    );

    let paused = t
        .client
        .update_journey_state()
        .application_id(&app)
        .journey_id(&jid)
        .journey_state_request(JourneyStateRequest::builder().state(State::Paused).build())
        .send()
        .await
        .unwrap()
        .journey_response
        .unwrap();
    assert_eq!(paused.state, Some(State::Paused));

    let listed = t
        .client
        .list_journeys()
        .application_id(&app)
        .send()
        .await
        .unwrap();
    let items = listed.journeys_response.unwrap().item.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].state, Some(State::Paused));

    t.client
        .delete_journey()
        .application_id(&app)
        .journey_id(&jid)
        .send()
        .await
        .unwrap();
    let err = t
        .client
        .get_journey()
        .application_id(&app)
        .journey_id(&jid)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_not_found_exception());
}

#[tokio::test]
async fn tags_are_added_listed_and_removed_by_percent_encoded_arn() {
    let t = util::start().await;
    let app = t.app("tags").await;
    let seg = t
        .client
        .create_segment()
        .application_id(&app)
        .write_segment_request(vip_request())
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    let arn = seg.arn.unwrap();

    t.client
        .tag_resource()
        .resource_arn(&arn)
        .tags_model(
            TagsModel::builder()
                .tags("owner", "growth")
                .tags("tier", "gold")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tags = t
        .client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags = tags.tags_model.unwrap().tags.unwrap();
    assert_eq!(tags.len(), 3);
    assert_eq!(tags["owner"], "growth");

    t.client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("owner")
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let tags = t
        .client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags = tags.tags_model.unwrap().tags.unwrap();
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["tier"]);

    let app_arn = format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{app}");
    t.client
        .tag_resource()
        .resource_arn(&app_arn)
        .tags_model(TagsModel::builder().tags("env", "prod").build())
        .send()
        .await
        .unwrap();
    let got = t
        .client
        .get_app()
        .application_id(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.application_response.unwrap().tags.unwrap()["env"],
        "prod"
    );

    let err = t
        .client
        .list_tags_for_resource()
        .resource_arn(format!("arn:aws:mobiletargeting:us-east-1:000000000000:apps/{app}/segments/ffffffffffffffffffffffffffffffff"))
        .send()
        .await
        .unwrap_err();
    use aws_sdk_pinpoint::error::ProvideErrorMetadata;
    assert_eq!(err.code(), Some("NotFoundException"));
}
