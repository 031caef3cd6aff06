//! Customer Profiles' segment-definition API on `segmentctl serve`, driven by the real
//! `aws-sdk-customerprofiles` client: domains, segment definitions, tags; every error
//! received typed, with the service's own error names, on both backends.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_customerprofiles::error::ProvideErrorMetadata;
use aws_sdk_customerprofiles::types::{
    AddressDimension, AttributeDimension, AttributeDimensionType, CalculatedAttributeDimension,
    ConditionOverrides, DateDimension, DateDimensionType, Dimension, Group, IncludeOptions,
    ProfileAttributes, ProfileDimension, ProfileType, ProfileTypeDimension,
    ProfileTypeDimensionType, RangeOverride, RangeUnit, SegmentGroup, SegmentSort,
    SegmentSortOrder, SortAttribute, SourceSegment, StringDimensionType,
};
use aws_sdk_customerprofiles::Client;

use crate::util::{self, error_body, header, raw};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn domain(cp: &Client, name: &str) {
    cp.create_domain()
        .domain_name(name)
        .default_expiration_days(30)
        .send()
        .await
        .expect("CreateDomain");
}

fn first_name(kind: StringDimensionType, values: &[&str]) -> Dimension {
    let mut d = ProfileDimension::builder().dimension_type(kind);
    for v in values {
        d = d.values(*v);
    }
    Dimension::ProfileAttributes(
        ProfileAttributes::builder()
            .first_name(d.build().unwrap())
            .build(),
    )
}

/// CreateSegmentDefinition `name` in `domain`, refused with a 400: its message.
async fn refused(cp: &Client, domain: &str, name: &str, groups: SegmentGroup) -> String {
    let e = cp
        .create_segment_definition()
        .domain_name(domain)
        .segment_definition_name(name)
        .display_name(name)
        .segment_groups(groups)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    e.message().unwrap_or_default().to_string()
}

/// A definition over FirstName, optionally built on `source`.
fn simple(source: Option<&str>) -> SegmentGroup {
    let mut g = Group::builder()
        .dimensions(first_name(StringDimensionType::Inclusive, &["Ada"]))
        .r#type(IncludeOptions::All);
    if let Some(s) = source {
        g = g
            .source_segments(SourceSegment::builder().segment_definition_name(s).build())
            .source_type(IncludeOptions::Any);
    }
    SegmentGroup::builder()
        .groups(g.build())
        .include(IncludeOptions::All)
        .build()
}

async fn create(cp: &Client, domain: &str, name: &str, groups: SegmentGroup) {
    cp.create_segment_definition()
        .domain_name(domain)
        .segment_definition_name(name)
        .display_name(name)
        .segment_groups(groups)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateSegmentDefinition {name}: {:?}",
                e.into_service_error()
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_is_created_read_listed_and_deleted_with_epoch_timestamps() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    let before = now_secs();
    let created = cp
        .create_domain()
        .domain_name("shop")
        .default_expiration_days(30)
        .dead_letter_queue_url("https://sqs.us-east-1.amazonaws.com/1/dlq")
        .tags("team", "growth")
        .send()
        .await
        .expect("CreateDomain");
    assert_eq!(created.domain_name(), "shop");
    assert_eq!(created.default_expiration_days(), 30);
    // Epoch seconds, read by the SDK as a timestamp (an ISO string would fail to parse).
    let at = created.created_at().secs();
    assert!((before - 5..=now_secs() + 5).contains(&at), "{at}");
    assert_eq!(created.last_updated_at().secs(), at);
    assert_eq!(created.tags().unwrap()["team"], "growth");

    let got = cp.get_domain().domain_name("shop").send().await.unwrap();
    assert_eq!(got.created_at().secs(), at);
    assert_eq!(got.default_expiration_days(), Some(30));
    assert_eq!(
        got.dead_letter_queue_url(),
        Some("https://sqs.us-east-1.amazonaws.com/1/dlq")
    );
    assert_eq!(got.stats().unwrap().profile_count(), 0);

    domain(&cp, "staging").await;
    domain(&cp, "archive").await;
    // Pages of one, in creation order, through NextToken.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cp
            .list_domains()
            .max_results(1)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.items().len() <= 1);
        names.extend(page.items().iter().map(|d| d.domain_name().to_string()));
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["shop", "staging", "archive"]);

    let e = cp
        .create_domain()
        .domain_name("shop")
        .default_expiration_days(7)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(e.message(), Some("Domain shop already exists"));

    let deleted = cp
        .delete_domain()
        .domain_name("staging")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.message(), "Domain staging deleted");
    let e = cp
        .get_domain()
        .domain_name("staging")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    assert_eq!(e.message(), Some("Domain staging does not exist"));
}

/// A definition using every family of criterion: what GetSegmentDefinition returns equals
/// what was sent, member for member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_with_every_dimension_family_round_trips() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    create(&cp, "shop", "base", simple(None)).await;

    let pd = |kind: StringDimensionType, v: &str| {
        ProfileDimension::builder()
            .dimension_type(kind)
            .values(v)
            .build()
            .unwrap()
    };
    let attr = |kind: AttributeDimensionType, values: &[&str]| {
        let mut a = AttributeDimension::builder().dimension_type(kind);
        for v in values {
            a = a.values(*v);
        }
        a.build().unwrap()
    };
    let profile = ProfileAttributes::builder()
        .first_name(pd(StringDimensionType::BeginsWith, "A"))
        .last_name(pd(StringDimensionType::EndsWith, "son"))
        .email_address(pd(StringDimensionType::Contains, "@example.com"))
        .gender_string(pd(StringDimensionType::Exclusive, "unknown"))
        .birth_date(
            DateDimension::builder()
                .dimension_type(DateDimensionType::Between)
                .values("1980-01-01")
                .values("1990-12-31T23:59:59Z")
                .build()
                .unwrap(),
        )
        .address(
            AddressDimension::builder()
                .city(pd(StringDimensionType::Inclusive, "Paris"))
                .country(pd(StringDimensionType::Inclusive, "FR"))
                .build(),
        )
        .attributes(
            "tier",
            attr(AttributeDimensionType::ListContainsAll, &["gold", "vip"]),
        )
        .attributes(
            "spend",
            attr(AttributeDimensionType::GreaterThanOrEqual, &["100.5"]),
        )
        .attributes("joined", attr(AttributeDimensionType::On, &["2026-01-31"]))
        .profile_type(
            ProfileTypeDimension::builder()
                .dimension_type(ProfileTypeDimensionType::Inclusive)
                .values(ProfileType::Profile)
                .build()
                .unwrap(),
        )
        .build();
    let calculated = CalculatedAttributeDimension::builder()
        .dimension_type(AttributeDimensionType::GreaterThan)
        .values("3")
        .condition_overrides(
            ConditionOverrides::builder()
                .range(
                    RangeOverride::builder()
                        .start(0)
                        .end(30)
                        .unit(RangeUnit::Days)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap();
    let groups = SegmentGroup::builder()
        .groups(
            Group::builder()
                .source_segments(
                    SourceSegment::builder()
                        .segment_definition_name("base")
                        .build(),
                )
                .source_type(IncludeOptions::Any)
                .r#type(IncludeOptions::All)
                .dimensions(Dimension::ProfileAttributes(profile))
                .dimensions(Dimension::CalculatedAttributes(
                    [("_orders".to_string(), calculated)].into_iter().collect(),
                ))
                .build(),
        )
        .groups(
            Group::builder()
                .r#type(IncludeOptions::None)
                .dimensions(first_name(
                    StringDimensionType::Inclusive,
                    &["Mallory", "Eve"],
                ))
                .build(),
        )
        .include(IncludeOptions::Any)
        .build();
    let sort = SegmentSort::builder()
        .attributes(
            SortAttribute::builder()
                .name("LastName")
                .order(SegmentSortOrder::Asc)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let created = cp
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip-2026")
        .display_name("VIP customers")
        .description("Customers who spend")
        .segment_groups(groups.clone())
        .segment_sort(sort.clone())
        .tags("segmentctl:name", "vip")
        .send()
        .await
        .expect("CreateSegmentDefinition");
    let arn = "arn:aws:profile:us-east-1:000000000000:domains/shop/segment-definitions/vip-2026";
    assert_eq!(created.segment_definition_name(), "vip-2026");
    assert_eq!(created.segment_definition_arn(), Some(arn));
    assert_eq!(created.display_name(), Some("VIP customers"));
    assert!(created.created_at().is_some());

    let got = cp
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip-2026")
        .send()
        .await
        .unwrap();
    assert_eq!(got.segment_definition_name(), Some("vip-2026"));
    assert_eq!(got.display_name(), Some("VIP customers"));
    assert_eq!(got.description(), Some("Customers who spend"));
    assert_eq!(got.segment_definition_arn(), arn);
    assert_eq!(got.segment_groups(), Some(&groups));
    assert_eq!(got.segment_sort(), Some(&sort));
    assert_eq!(got.tags().unwrap()["segmentctl:name"], "vip");
    assert_eq!(
        got.segment_type(),
        Some(&aws_sdk_customerprofiles::types::SegmentType::Classic)
    );
    assert_eq!(
        got.created_at().map(|c| c.secs()),
        created.created_at().map(|c| c.secs())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_list_in_pages_without_their_criteria() {
    // Unauthenticated (loopback only), so the raw requests below need no signature.
    let t = util::start_with(|c| c.auth = segmentctl::server::Auth::None).await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    domain(&cp, "other").await;
    for i in 0..7 {
        create(&cp, "shop", &format!("d{i}"), simple(None)).await;
    }
    create(&cp, "other", "elsewhere", simple(None)).await;
    let items: Vec<_> = cp
        .list_segment_definitions()
        .domain_name("shop")
        .max_results(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let names: Vec<_> = items
        .iter()
        .map(|d| d.segment_definition_name().unwrap())
        .collect();
    assert_eq!(names, ["d0", "d1", "d2", "d3", "d4", "d5", "d6"]);
    assert!(items.iter().all(|d| d.created_at().is_some()
        && d.segment_definition_arn().is_some()
        && d.segment_type().is_some()));
    // The item shape has no criteria: the body carries none.
    let (status, _, body) = raw(
        t.addr(),
        "GET /domains/shop/segment-definitions?max-results=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["Items"][0]["SegmentDefinitionName"], "d0");
    assert!(page["Items"][0]["CreatedAt"].is_number(), "{body}");
    assert!(page["Items"][0].get("SegmentGroups").is_none(), "{body}");
    assert!(page["NextToken"].is_string(), "{body}");
    // A method the resource does not have: 405, named BadRequestException (the model has
    // no 405 shape), naming the allowed methods.
    let (status, headers, body) = raw(
        t.addr(),
        "PATCH /domains/shop HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("BadRequestException")
    );
    assert!(error_body(&body)["RequestID"].is_string(), "{body}");
    assert_eq!(
        error_body(&body)["Message"],
        "Method PATCH is not allowed on this resource; allowed: GET, POST, DELETE, OPTIONS"
    );
    // An operation this server does not implement, under a domain: a 400 that says so,
    // not the 404 of a missing domain.
    let (status, headers, body) = raw(
        t.addr(),
        "PUT /domains/shop/object-types/Orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("BadRequestException")
    );
    assert_eq!(
        error_body(&body)["Message"],
        "object-types: not implemented by this server, which serves a domain's profiles, segment definitions, estimates, memberships and snapshots"
    );
    for bad in [0, 501] {
        let e = cp
            .list_segment_definitions()
            .domain_name("shop")
            .max_results(bad)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_bad_request_exception(), "{e:?}");
        assert!(e.message().unwrap().starts_with("MaxResults:"), "{e:?}");
    }
    let e = cp
        .list_segment_definitions()
        .domain_name("nowhere")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
}

/// There is no update: the same request again answers the stored definition (the operation
/// is idempotent, so a retried create is harmless); a different one is refused; a deleted
/// name is free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_taken_once_and_freed_by_its_deletion() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    create(&cp, "shop", "vip", simple(None)).await;
    let first = cp
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip")
        .send()
        .await
        .unwrap();
    create(&cp, "shop", "vip", simple(None)).await;
    let again = cp
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip")
        .send()
        .await
        .unwrap();
    assert_eq!(again.created_at(), first.created_at());

    let other = SegmentGroup::builder()
        .groups(
            Group::builder()
                .dimensions(first_name(StringDimensionType::Inclusive, &["Grace"]))
                .build(),
        )
        .build();
    let e = cp
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip")
        .display_name("vip")
        .segment_groups(other.clone())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("Segment definition vip already exists in domain shop with another definition; there is no update: delete it and create it again")
    );

    let deleted = cp
        .delete_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.message(), Some("Segment definition vip deleted"));
    create(&cp, "shop", "vip", other.clone()).await;
    let now = cp
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("vip")
        .send()
        .await
        .unwrap();
    assert_eq!(now.segment_groups(), Some(&other));

    let e = cp
        .delete_segment_definition()
        .domain_name("shop")
        .segment_definition_name("absent")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("Segment definition absent does not exist in domain shop")
    );
}

/// Sources are names in the same domain: one that does not exist there is refused with its
/// path, and no chain of sources may lead back to the definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_must_exist_in_the_domain_and_never_lead_back() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    domain(&cp, "other").await;
    create(&cp, "other", "base", simple(None)).await;
    assert_eq!(
        refused(&cp, "shop", "vip", simple(Some("base"))).await,
        "SegmentGroups.Groups[0].SourceSegments[0].SegmentDefinitionName: segment definition base does not exist in domain shop"
    );

    // a ← b ← c, then a deleted and created again on c: a cycle.
    create(&cp, "shop", "a", simple(None)).await;
    create(&cp, "shop", "b", simple(Some("a"))).await;
    create(&cp, "shop", "c", simple(Some("b"))).await;
    cp.delete_segment_definition()
        .domain_name("shop")
        .segment_definition_name("a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused(&cp, "shop", "a", simple(Some("c"))).await,
        "SegmentGroups.Groups[0].SourceSegments[0].SegmentDefinitionName: c builds on a (through its sources): a definition cannot build on itself"
    );
    // Nothing was kept of the refused definition.
    let e = cp
        .get_segment_definition()
        .domain_name("shop")
        .segment_definition_name("a")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
}

/// Definitions already built on a name count toward the depth of a chain through it: a
/// definition deleted and created again on a deep chain is refused when the chains above it
/// would go past 32 sources, and accepted (and evaluated through) when they would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_created_again_cannot_deepen_the_chains_built_on_it() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    // Two chains: low0 ← low1 ← … ← low30 and high0 ← high1 ← … ← high29.
    create(&cp, "shop", "low0", simple(None)).await;
    for i in 1..=30 {
        create(
            &cp,
            "shop",
            &format!("low{i}"),
            simple(Some(&format!("low{}", i - 1))),
        )
        .await;
    }
    create(&cp, "shop", "high0", simple(None)).await;
    for i in 1..=29 {
        create(
            &cp,
            "shop",
            &format!("high{i}"),
            simple(Some(&format!("high{}", i - 1))),
        )
        .await;
    }
    cp.delete_segment_definition()
        .domain_name("shop")
        .segment_definition_name("high0")
        .send()
        .await
        .unwrap();
    // high0 on low30: high29's chain would be 29 + 1 + 30 sources deep.
    assert_eq!(
        refused(&cp, "shop", "high0", simple(Some("low30"))).await,
        "SegmentGroups.Groups[0].SourceSegments[0].SegmentDefinitionName: with the 29 levels of definitions that already build on high0, the chain of sources through low30 is deeper than 32"
    );
    // high0 on low2: 29 + 1 + 2 = 32 sources below high29, the most there may be.
    create(&cp, "shop", "high0", simple(Some("low2"))).await;
    let ada = cp
        .create_profile()
        .domain_name("shop")
        .first_name("Ada")
        .send()
        .await
        .unwrap()
        .profile_id()
        .to_string();
    let out = cp
        .get_segment_membership()
        .domain_name("shop")
        .segment_definition_name("high29")
        .profile_ids(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.profiles()[0].query_result(),
        &aws_sdk_customerprofiles::types::QueryResult::Present,
        "{out:?}"
    );
}

/// A NUL character is refused with the field named, on either database (PostgreSQL's text
/// cannot hold one: it was a 500 there, which the SDKs retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_a_400_naming_its_field() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    let e = cp
        .create_profile()
        .domain_name("shop")
        .first_name("x\u{0}y")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("FirstName: must not hold a NUL character (U+0000)")
    );
    let e = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_profileId")
        .values("a\u{0}")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("Values[0]: must not hold a NUL character (U+0000)")
    );
}

/// Every limit of the model is a 400 naming the field, received typed by the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_with_the_field_named() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    let cases: Vec<(&str, Result<(), String>)> = vec![
        (
            "DisplayName: must be 1 to 255 characters long, found 256",
            cp.create_segment_definition()
                .domain_name("shop")
                .segment_definition_name("x")
                .display_name("d".repeat(256))
                .segment_groups(simple(None))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error().message().unwrap_or("").to_string()),
        ),
        (
            "SegmentDefinitionName: \"a.b\" is not a name: only letters, digits, '_' and '-' are allowed (found '.')",
            cp.create_segment_definition()
                .domain_name("shop")
                .segment_definition_name("a.b")
                .display_name("x")
                .segment_groups(simple(None))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error().message().unwrap_or("").to_string()),
        ),
        (
            "SegmentGroups.Groups[0].Dimensions[0].ProfileAttributes.FirstName.Values: must list 1 to 50 values, found 51",
            cp.create_segment_definition()
                .domain_name("shop")
                .segment_definition_name("x")
                .display_name("x")
                .segment_groups(
                    SegmentGroup::builder()
                        .groups(
                            Group::builder()
                                .dimensions(first_name(
                                    StringDimensionType::Inclusive,
                                    &["v"; 51],
                                ))
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error().message().unwrap_or("").to_string()),
        ),
        (
            "DefaultExpirationDays: must be from 1 to 1098, found 1099",
            cp.create_domain()
                .domain_name("late")
                .default_expiration_days(1099)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error().message().unwrap_or("").to_string()),
        ),
        (
            "Tags[\"aws:team\"]: tag keys starting with aws: are reserved",
            cp.create_domain()
                .domain_name("tagged")
                .default_expiration_days(1)
                .tags("aws:team", "x")
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error().message().unwrap_or("").to_string()),
        ),
    ];
    for (expected, got) in cases {
        assert_eq!(got, Err(expected.to_string()));
    }
    // Nothing was created by a refused request.
    let listed = cp.list_domains().send().await.unwrap();
    assert_eq!(listed.items().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_added_listed_and_removed_on_a_definition_and_a_domain() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    create(&cp, "shop", "vip", simple(None)).await;
    for arn in [
        "arn:aws:profile:us-east-1:000000000000:domains/shop",
        "arn:aws:profile:us-east-1:000000000000:domains/shop/segment-definitions/vip",
    ] {
        cp.tag_resource()
            .resource_arn(arn)
            .tags("team", "growth")
            .tags("tier", "gold")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{arn}: {:?}", e.into_service_error()));
        let listed = cp
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        let tags = listed.tags().unwrap();
        assert_eq!(
            (tags["team"].as_str(), tags["tier"].as_str()),
            ("growth", "gold")
        );
        cp.untag_resource()
            .resource_arn(arn)
            .tag_keys("team")
            .tag_keys("absent")
            .send()
            .await
            .unwrap();
        let listed = cp
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.tags().unwrap().keys().collect::<Vec<_>>(), ["tier"]);
    }
    // Another account's or region's ARN, or a definition that is not there: 404.
    for arn in [
        "arn:aws:profile:us-east-1:111111111111:domains/shop",
        "arn:aws:profile:eu-west-1:000000000000:domains/shop",
        "arn:aws:profile:us-east-1:000000000000:domains/shop/segment-definitions/absent",
    ] {
        let e = cp
            .tag_resource()
            .resource_arn(arn)
            .tags("k", "v")
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_resource_not_found_exception(), "{arn}: {e:?}");
    }
    let e = cp
        .tag_resource()
        .resource_arn("arn:aws:profile:us-east-1:000000000000:domains/shop")
        .tags("has space", "v")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_domain_removes_its_definitions() {
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    create(&cp, "shop", "a", simple(None)).await;
    create(&cp, "shop", "b", simple(Some("a"))).await;
    cp.delete_domain().domain_name("shop").send().await.unwrap();
    domain(&cp, "shop").await;
    let listed = cp
        .list_segment_definitions()
        .domain_name("shop")
        .send()
        .await
        .unwrap();
    assert!(listed.items().is_empty(), "{listed:?}");
    // Its sources went with it: `a` may be created anew on a fresh `b`.
    create(&cp, "shop", "b", simple(None)).await;
    create(&cp, "shop", "a", simple(Some("b"))).await;
}

/// Refusals before any handler (authentication, the method, the body's size) carry
/// Customer Profiles' error names on its paths, and Pinpoint's on Pinpoint's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_handler_carry_this_services_error_names() {
    let t = util::start_with(|c| {
        if let segmentctl::server::Auth::SigV4(creds) = &mut c.auth {
            *creds = creds.clone().with(
                "AKIDREADONLY",
                "read-only-secret",
                segmentctl::server::auth::Access::ReadOnly,
            );
        }
    })
    .await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;

    let wrong = util::profiles_client_with(&t, util::KEY, "not-the-secret");
    let e = wrong
        .get_domain()
        .domain_name("shop")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");

    let ro = util::profiles_client_with(&t, "AKIDREADONLY", "read-only-secret");
    assert!(ro.get_domain().domain_name("shop").send().await.is_ok());
    let e = ro
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("x")
        .display_name("x")
        .segment_groups(simple(None))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");
    assert!(e.message().unwrap().contains("read-only"), "{e:?}");

    // 7 MB and one byte: 413, named BadRequestException (the model has no 413 shape).
    let e = cp
        .create_segment_definition()
        .domain_name("shop")
        .segment_definition_name("big")
        .display_name("big")
        .description("d".repeat(7 * 1024 * 1024 + 1))
        .send()
        .await
        .unwrap_err();
    let raw_status = e.raw_response().map(|r| r.status().as_u16());
    let e = e.into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(raw_status, Some(413));

    // Signed for Pinpoint's service on a Customer Profiles path: refused, naming `profile`.
    let request = util::scoped_to("mobiletargeting", "/domains/shop");
    let (status, headers, body) = raw(t.addr(), &request).await;
    assert_eq!(status, 403);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    assert_eq!(
        error_body(&body)["Message"],
        "Credential should be scoped to correct service: 'profile'"
    );
    // Unsigned: refused with this service's name.
    let (status, headers, _) = raw(
        t.addr(),
        "PATCH /domains/shop HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403, "authentication comes first");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("AccessDeniedException")
    );
    // Pinpoint's paths keep Pinpoint's names.
    let (status, headers, _) = raw(
        t.addr(),
        "GET /v1/apps HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ForbiddenException")
    );
}

async fn profile(cp: &Client, domain: &str, first: &str, last: &str, email: &str) -> String {
    cp.create_profile()
        .domain_name(domain)
        .first_name(first)
        .last_name(last)
        .email_address(email)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateProfile: {:?}", e.into_service_error()))
        .profile_id()
        .to_string()
}

async fn search(
    cp: &Client,
    domain: &str,
    key: &str,
    value: &str,
) -> Vec<aws_sdk_customerprofiles::types::Profile> {
    cp.search_profiles()
        .domain_name(domain)
        .key_name(key)
        .values(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SearchProfiles: {:?}", e.into_service_error()))
        .items()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_created_with_32_hex_ids_updated_field_by_field_and_deleted() {
    use aws_sdk_customerprofiles::types::{Address, UpdateAddress};
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    let id = cp
        .create_profile()
        .domain_name("shop")
        .first_name("Ada")
        .middle_name("King")
        .last_name("Lovelace")
        .birth_date("1815-12-10")
        .address(Address::builder().city("London").country("GB").build())
        .attributes("tier", "gold")
        .attributes("spend", "120")
        .send()
        .await
        .unwrap()
        .profile_id()
        .to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{id}"
    );
    let got = &search(&cp, "shop", "_profileId", &id).await[0];
    assert_eq!(got.first_name(), Some("Ada"));
    assert_eq!(got.birth_date(), Some("1815-12-10"));
    assert_eq!(got.address().unwrap().city(), Some("London"));

    // "" removes; absent keeps; objects merge key by key.
    cp.update_profile()
        .domain_name("shop")
        .profile_id(&id)
        .middle_name("")
        .address(UpdateAddress::builder().city("").postal_code("N1").build())
        .attributes("tier", "")
        .attributes("seen", "2026-12-01")
        .send()
        .await
        .unwrap();
    let got = &search(&cp, "shop", "_profileId", &id).await[0];
    assert_eq!(got.middle_name(), None);
    assert_eq!(got.first_name(), Some("Ada"));
    assert_eq!(got.address().unwrap().city(), None);
    assert_eq!(got.address().unwrap().country(), Some("GB"));
    assert_eq!(got.address().unwrap().postal_code(), Some("N1"));
    let attrs = got.attributes().unwrap();
    assert_eq!(attrs.get("tier"), None);
    assert_eq!(attrs["spend"], "120");
    assert_eq!(attrs["seen"], "2026-12-01");
    // The search keys follow the update: the middle name left the full name.
    assert_eq!(
        search(&cp, "shop", "_fullName", "Ada King Lovelace")
            .await
            .len(),
        0
    );
    assert_eq!(
        search(&cp, "shop", "_fullName", "Ada Lovelace").await.len(),
        1
    );
    assert_eq!(
        cp.get_domain()
            .domain_name("shop")
            .send()
            .await
            .unwrap()
            .stats()
            .unwrap()
            .profile_count(),
        1
    );

    // An empty string on create is refused (1–255 there), and an unknown profile is a 404.
    let e = cp
        .create_profile()
        .domain_name("shop")
        .first_name("")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("FirstName: must be 1 to 255 characters long, found 0")
    );
    let absent = "0".repeat(32);
    let e = cp
        .update_profile()
        .domain_name("shop")
        .profile_id(&absent)
        .first_name("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = cp
        .delete_profile()
        .domain_name("shop")
        .profile_id("XYZ")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("ProfileId: \"XYZ\" is not a profile id: 32 lowercase hexadecimal digits")
    );

    let deleted = cp
        .delete_profile()
        .domain_name("shop")
        .profile_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.message(),
        Some(format!("Profile {id} deleted").as_str())
    );
    assert!(search(&cp, "shop", "_profileId", &id).await.is_empty());
    assert!(search(&cp, "shop", "_fullName", "Ada Lovelace")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_by_each_key_with_and_or_and_pages_by_twenty() {
    use aws_sdk_customerprofiles::types::{AdditionalSearchKey, LogicalOperator};
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    domain(&cp, "other").await;
    let ada = profile(&cp, "shop", "Ada", "Lovelace", "ada@example.com").await;
    let grace = profile(&cp, "shop", "Grace", "Hopper", "grace@example.com").await;
    profile(&cp, "other", "Ada", "Lovelace", "ada@example.com").await;
    cp.update_profile()
        .domain_name("shop")
        .profile_id(&grace)
        .mobile_phone_number("+15550001")
        .account_number("ACC-7")
        .send()
        .await
        .unwrap();

    let found = search(&cp, "shop", "_email", "ada@example.com").await;
    assert_eq!(found.len(), 1, "one domain only");
    assert_eq!(found[0].profile_id(), Some(ada.as_str()));
    assert_eq!(found[0].found_by_items()[0].key_name(), Some("_email"));
    assert_eq!(found[0].found_by_items()[0].values(), ["ada@example.com"]);
    assert_eq!(
        search(&cp, "shop", "_phone", "+15550001").await[0].profile_id(),
        Some(grace.as_str())
    );
    assert_eq!(
        search(&cp, "shop", "_account", "ACC-7").await[0].profile_id(),
        Some(grace.as_str())
    );

    // OR (the default): either key; AND: both.
    let or = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_email")
        .values("ada@example.com")
        .additional_search_keys(
            AdditionalSearchKey::builder()
                .key_name("_account")
                .values("ACC-7")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = or.items().iter().map(|p| p.profile_id().unwrap()).collect();
    assert_eq!(ids, [ada.as_str(), grace.as_str()]);
    let and = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_fullName")
        .values("Grace Hopper")
        .values("Ada Lovelace")
        .additional_search_keys(
            AdditionalSearchKey::builder()
                .key_name("_account")
                .values("ACC-7")
                .build()
                .unwrap(),
        )
        .logical_operator(LogicalOperator::And)
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = and
        .items()
        .iter()
        .map(|p| p.profile_id().unwrap())
        .collect();
    assert_eq!(ids, [grace.as_str()]);
    let by: Vec<_> = and.items()[0]
        .found_by_items()
        .iter()
        .map(|f| (f.key_name().unwrap(), f.values().to_vec()))
        .collect();
    assert_eq!(
        by,
        [
            ("_fullName", vec!["Grace Hopper".to_string()]),
            ("_account", vec!["ACC-7".to_string()])
        ]
    );

    // Pages of 20 by default, in creation order.
    for i in 0..23 {
        profile(&cp, "shop", "Twin", "Doe", &format!("twin{i}@example.com")).await;
    }
    let first = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_fullName")
        .values("Twin Doe")
        .send()
        .await
        .unwrap();
    assert_eq!(first.items().len(), 20);
    assert_eq!(first.items()[0].email_address(), Some("twin0@example.com"));
    let rest = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_fullName")
        .values("Twin Doe")
        .next_token(first.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.items().len(), 3);
    assert_eq!(rest.items()[2].email_address(), Some("twin22@example.com"));
    assert!(rest.next_token().is_none());

    let e = cp
        .search_profiles()
        .domain_name("shop")
        .key_name("_emial")
        .values("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert!(
        e.message().unwrap().ends_with("(did you mean _email?)"),
        "{e:?}"
    );
}

/// A read-only key may make the POSTs that only read (SearchProfiles), and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_key_may_search_profiles_but_not_delete_one_though_both_are_posts() {
    let t = util::start_with(|c| {
        if let segmentctl::server::Auth::SigV4(creds) = &mut c.auth {
            *creds = creds.clone().with(
                "AKIDREADONLY",
                "read-only-secret",
                segmentctl::server::auth::Access::ReadOnly,
            );
        }
    })
    .await;
    let cp = util::profiles_client(&t);
    domain(&cp, "shop").await;
    let id = profile(&cp, "shop", "Ada", "Lovelace", "ada@example.com").await;
    let ro = util::profiles_client_with(&t, "AKIDREADONLY", "read-only-secret");
    assert_eq!(search(&ro, "shop", "_profileId", &id).await.len(), 1);
    let e = ro
        .delete_profile()
        .domain_name("shop")
        .profile_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");
    assert_eq!(search(&cp, "shop", "_profileId", &id).await.len(), 1);
}

/// Three profiles and two definitions: `adas` (FirstName Ada) and `gold-adas` (built on
/// `adas`, Attributes tier LIST_CONTAINS gold).
/// Polls GetSegmentSnapshot (domain `shop`) until the snapshot is no longer IN_PROGRESS.
async fn snapshot_ended(
    cp: &Client,
    definition: &str,
    id: &str,
) -> aws_sdk_customerprofiles::operation::get_segment_snapshot::GetSegmentSnapshotOutput {
    use aws_sdk_customerprofiles::types::SegmentSnapshotStatus;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = cp
            .get_segment_snapshot()
            .domain_name("shop")
            .segment_definition_name(definition)
            .snapshot_id(id)
            .send()
            .await
            .unwrap();
        if *got.status() != SegmentSnapshotStatus::InProgress {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls GetSegmentEstimate (domain `shop`) until the estimate is no longer RUNNING, each
/// answer while it runs a 202.
async fn estimate_ended(
    cp: &Client,
    id: &str,
) -> aws_sdk_customerprofiles::operation::get_segment_estimate::GetSegmentEstimateOutput {
    use aws_sdk_customerprofiles::types::EstimateStatus;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = cp
            .get_segment_estimate()
            .domain_name("shop")
            .estimate_id(id)
            .send()
            .await
            .unwrap();
        if got.status() != Some(&EstimateStatus::Running) {
            return got;
        }
        assert_eq!(got.status_code(), 202);
        assert!(
            std::time::Instant::now() < deadline,
            "the estimate never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn audience(cp: &Client) -> (String, String, String) {
    use aws_sdk_customerprofiles::types::Address;
    domain(cp, "shop").await;
    let mut ids = Vec::new();
    for (first, tier, city) in [
        ("Ada", "[\"gold\",\"vip\"]", "London"),
        ("Ada", "silver", "Paris"),
        ("Grace", "gold", "London"),
    ] {
        let id = cp
            .create_profile()
            .domain_name("shop")
            .first_name(first)
            .attributes("tier", tier)
            .address(Address::builder().city(city).build())
            .send()
            .await
            .unwrap()
            .profile_id()
            .to_string();
        ids.push(id);
    }
    create(cp, "shop", "adas", simple(None)).await;
    let gold = Dimension::ProfileAttributes(
        ProfileAttributes::builder()
            .attributes(
                "tier",
                AttributeDimension::builder()
                    .dimension_type(AttributeDimensionType::ListContains)
                    .values("gold")
                    .build()
                    .unwrap(),
            )
            .build(),
    );
    let groups = SegmentGroup::builder()
        .groups(
            Group::builder()
                .source_segments(
                    SourceSegment::builder()
                        .segment_definition_name("adas")
                        .build(),
                )
                .dimensions(gold)
                .build(),
        )
        .build();
    create(cp, "shop", "gold-adas", groups).await;
    (ids[0].clone(), ids[1].clone(), ids[2].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_says_present_or_absent_and_names_unknown_ids_in_failures() {
    use aws_sdk_customerprofiles::types::QueryResult;
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    let (ada_gold, ada_silver, grace) = audience(&cp).await;
    let unknown = "f".repeat(32);
    let before = now_secs();
    let out = cp
        .get_segment_membership()
        .domain_name("shop")
        .segment_definition_name("gold-adas")
        .profile_ids(&ada_gold)
        .profile_ids(&ada_silver)
        .profile_ids(&grace)
        .profile_ids(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(out.segment_definition_name(), Some("gold-adas"));
    let results: Vec<_> = out
        .profiles()
        .iter()
        .map(|p| {
            (
                p.profile_id(),
                p.query_result().clone(),
                p.profile().is_some(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (ada_gold.as_str(), QueryResult::Present, true),
            (ada_silver.as_str(), QueryResult::Absent, false),
            (grace.as_str(), QueryResult::Absent, false),
        ]
    );
    assert_eq!(
        out.profiles()[0].profile().unwrap().first_name(),
        Some("Ada")
    );
    assert_eq!(out.failures().len(), 1);
    assert_eq!(out.failures()[0].profile_id(), unknown);
    assert_eq!(out.failures()[0].message(), "Profile not found");
    assert_eq!(out.failures()[0].status(), Some(404));
    assert!(out.last_computed_at().unwrap().secs() >= before - 5);

    let e = cp
        .get_segment_membership()
        .domain_name("shop")
        .segment_definition_name("absent")
        .profile_ids(&grace)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let mut too_many = cp
        .get_segment_membership()
        .domain_name("shop")
        .segment_definition_name("adas");
    for _ in 0..101 {
        too_many = too_many.profile_ids(&grace);
    }
    let e = too_many.send().await.unwrap_err().into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("ProfileIds: must list 1 to 100 profile ids, found 101")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_runs_as_a_job_and_answers_a_string_count() {
    use aws_sdk_customerprofiles::types::{EstimateStatus, SegmentGroupStructure};
    let t = util::start().await;
    let cp = util::profiles_client(&t);
    audience(&cp).await;
    let london = Dimension::ProfileAttributes(
        ProfileAttributes::builder()
            .address(
                AddressDimension::builder()
                    .city(
                        ProfileDimension::builder()
                            .dimension_type(StringDimensionType::Inclusive)
                            .values("London")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build(),
    );
    // Ada in London, from `adas`: one; London on its own: two; gold Adas: one.
    let cases = [
        (
            SegmentGroupStructure::builder()
                .groups(
                    Group::builder()
                        .source_segments(
                            SourceSegment::builder()
                                .segment_definition_name("adas")
                                .build(),
                        )
                        .dimensions(london.clone())
                        .build(),
                )
                .build(),
            "1",
        ),
        (
            SegmentGroupStructure::builder()
                .groups(Group::builder().dimensions(london).build())
                .build(),
            "2",
        ),
        (
            SegmentGroupStructure::builder()
                .groups(
                    Group::builder()
                        .source_segments(
                            SourceSegment::builder()
                                .segment_definition_name("gold-adas")
                                .build(),
                        )
                        .build(),
                )
                .build(),
            "1",
        ),
    ];
    for (query, expected) in cases {
        let created = cp
            .create_segment_estimate()
            .domain_name("shop")
            .segment_query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(created.domain_name(), Some("shop"));
        let id = created.estimate_id().unwrap().to_string();
        let done = estimate_ended(&cp, &id).await;
        assert_eq!(done.status(), Some(&EstimateStatus::Succeeded), "{done:?}");
        assert_eq!(done.status_code(), 200);
        assert_eq!(done.estimate(), Some(expected));
        assert_eq!(done.estimate_id(), Some(id.as_str()));
    }
    // A source not in the domain is named; a SQL query is not implemented.
    let e = cp
        .create_segment_estimate()
        .domain_name("shop")
        .segment_query(
            SegmentGroupStructure::builder()
                .groups(
                    Group::builder()
                        .source_segments(
                            SourceSegment::builder()
                                .segment_definition_name("gone")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    assert_eq!(
        e.message(),
        Some("SegmentQuery.Groups[0].SourceSegments[0].SegmentDefinitionName: segment definition gone does not exist in this domain")
    );
    let e = cp
        .create_segment_estimate()
        .domain_name("shop")
        .segment_sql_query("SELECT 1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_bad_request_exception(), "{e:?}");
    let e = cp
        .get_segment_estimate()
        .domain_name("shop")
        .estimate_id("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_writes_the_members_as_json_lines_under_the_import_root() {
    use aws_sdk_customerprofiles::types::{DataFormat, SegmentSnapshotStatus as Status};
    use std::io::Read as _;
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let cp = util::profiles_client(&t);
    let (ada_gold, _, _) = audience(&cp).await;
    let destination = format!("file://{}/snapshots", root.path().display());
    let id = cp
        .create_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("gold-adas")
        .data_format(DataFormat::Jsonl)
        .destination_uri(&destination)
        .role_arn("arn:aws:iam::000000000000:role/snapshots")
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .to_string();
    let done = snapshot_ended(&cp, "gold-adas", &id).await;
    assert_eq!(*done.status(), Status::Completed, "{done:?}");
    assert_eq!(*done.data_format(), DataFormat::Jsonl);
    assert_eq!(done.destination_uri(), Some(destination.as_str()));
    assert_eq!(
        done.role_arn(),
        Some("arn:aws:iam::000000000000:role/snapshots")
    );
    let piece = root
        .path()
        .join(format!("snapshots/{id}/part-00000.jsonl.gz"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&piece).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ProfileId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, std::slice::from_ref(&ada_gold));

    // CSV: a header of the profile's dotted columns and its attributes, RFC 4180 quoting.
    let id_csv = cp
        .create_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("gold-adas")
        .data_format(DataFormat::Csv)
        .destination_uri(&destination)
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .to_string();
    let got = snapshot_ended(&cp, "gold-adas", &id_csv).await;
    assert_eq!(*got.status(), Status::Completed, "{got:?}");
    let piece = root
        .path()
        .join(format!("snapshots/{id_csv}/part-00000.csv.gz"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&piece).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("ProfileId,AccountNumber,"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(",Attributes.tier"), "{}", lines[0]);
    assert!(lines[0].contains(",Address.City,"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{ada_gold},")),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(r#","[""gold"",""vip""]""#),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(",Ada,"), "{}", lines[1]);

    // Another definition's path does not find it; other formats and places are refused.
    let e = cp
        .get_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("adas")
        .snapshot_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = cp
        .create_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("adas")
        .data_format(DataFormat::Orc)
        .destination_uri(&destination)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        e.message(),
        Some("DataFormat: ORC is not implemented by this server; use JSONL or CSV")
    );
    let e = cp
        .create_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("absent")
        .data_format(DataFormat::Jsonl)
        .destination_uri(&destination)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    // Outside the import root: the job fails, saying why, and writes nothing there.
    let outside = tempfile::tempdir().unwrap();
    let id = cp
        .create_segment_snapshot()
        .domain_name("shop")
        .segment_definition_name("adas")
        .data_format(DataFormat::Jsonl)
        .destination_uri(format!("file://{}", outside.path().display()))
        .send()
        .await
        .unwrap()
        .snapshot_id()
        .to_string();
    let failed = snapshot_ended(&cp, "adas", &id).await;
    assert_eq!(*failed.status(), Status::Failed, "{failed:?}");
    assert!(
        failed
            .status_message()
            .is_some_and(|m| m.ends_with("outside the server's --import-root folders")),
        "{failed:?}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// An estimate and a snapshot left unfinished by a server that stopped (recorded, never
/// run) are claimed and run to the end by the next server on the data: they never strand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_and_snapshots_cut_short_run_again_on_the_next_server() {
    use aws_sdk_customerprofiles::types::{EstimateStatus, SegmentSnapshotStatus};
    use segmentctl::server::store::{DataSource, JobKind, Store};
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_path_buf()];
    let first = util::start_with({
        let roots = roots.clone();
        move |cfg| cfg.import_roots = roots
    })
    .await;
    let cp = util::profiles_client(&first);
    audience(&cp).await;
    let data = first.data.clone();
    first.server.stop().await;

    // As a server would record them just before it stopped.
    let source = match data.to_str().unwrap() {
        d if d.starts_with("postgres") => DataSource::Postgres(d.to_string()),
        d => DataSource::Sqlite(d.into()),
    };
    let (estimate, snapshot) = tokio::task::spawn_blocking(move || {
        let mut store = Store::connect(
            &source,
            "us-east-1",
            "000000000000",
            segmentctl::server::store::pg::PgSettings::new(2),
        )
        .unwrap();
        // A lease that runs out soon, as a stopped server's does.
        store.job_lease = std::time::Duration::from_secs(1);
        let query = serde_json::json!({"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "gold-adas"}]}]});
        let e = store
            .create_profile_job(
                "shop",
                JobKind::SegmentEstimate,
                None,
                serde_json::json!({"DomainName": "shop", "SegmentQuery": query}),
            )
            .unwrap();
        let s = store
            .create_profile_job(
                "shop",
                JobKind::SegmentSnapshot,
                Some("adas"),
                serde_json::json!({
                    "DomainName": "shop", "SegmentDefinitionName": "adas", "DataFormat": "JSONL",
                    "DestinationUri": format!("file://{}/cut", roots[0].display()),
                }),
            )
            .unwrap();
        (
            e["Id"].as_str().unwrap().to_string(),
            s["Id"].as_str().unwrap().to_string(),
        )
    })
    .await
    .unwrap();

    let again = vec![root.path().to_path_buf()];
    let second = util::start_with(move |cfg| {
        cfg.data = match data.to_str().unwrap() {
            d if d.starts_with("postgres") => DataSource::Postgres(d.to_string()),
            d => DataSource::Sqlite(d.into()),
        };
        cfg.import_roots = again;
        // On PostgreSQL the stopped server's lease must run out first.
        cfg.job_lease = std::time::Duration::from_secs(1);
    })
    .await;
    let cp = util::profiles_client(&second);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let e = cp
            .get_segment_estimate()
            .domain_name("shop")
            .estimate_id(&estimate)
            .send()
            .await
            .unwrap();
        let s = cp
            .get_segment_snapshot()
            .domain_name("shop")
            .segment_definition_name("adas")
            .snapshot_id(&snapshot)
            .send()
            .await
            .unwrap();
        if e.status() == Some(&EstimateStatus::Succeeded)
            && *s.status() == SegmentSnapshotStatus::Completed
        {
            assert_eq!(e.estimate(), Some("1"));
            let piece = root
                .path()
                .join(format!("cut/{snapshot}/part-00000.jsonl.gz"));
            assert!(piece.is_file(), "{}", piece.display());
            break;
        }
        assert_ne!(e.status(), Some(&EstimateStatus::Failed), "{e:?}");
        assert_ne!(*s.status(), SegmentSnapshotStatus::Failed, "{s:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "not run by the next server: {e:?} {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
