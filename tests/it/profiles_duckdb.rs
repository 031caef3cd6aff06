//! Customer Profiles segment definitions evaluated by `segmentctl serve` against an
//! independent formulation: 30 definitions of every dimension family written as SQL by hand
//! (`benches/audience/profiles.py`), counted by DuckDB over the same generated profiles.
//! The profiles and definitions go in through `aws-sdk-customerprofiles`; each count is a
//! CreateSegmentEstimate. Every count must be equal, on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use aws_sdk_customerprofiles::types::{
    Address, EstimateStatus, ProfileType, SegmentGroupStructure, SourceSegment,
};

use crate::compat_boto3::python_with;
use crate::util;

const DUCKDB: &str = "duckdb==2.0.1";
const PROFILES: usize = 1500;

/// A SegmentGroups JSON object as the SDK's type, member for member: the definitions reach
/// the server as the script wrote them.
pub(crate) fn groups(v: &serde_json::Value) -> aws_sdk_customerprofiles::types::SegmentGroup {
    use aws_sdk_customerprofiles::types::{Group, IncludeOptions, SegmentGroup};
    fn include(v: &serde_json::Value) -> Option<IncludeOptions> {
        v.as_str().map(IncludeOptions::from)
    }
    let mut out = SegmentGroup::builder().set_include(include(&v["Include"]));
    for g in v["Groups"].as_array().into_iter().flatten() {
        let mut b = Group::builder()
            .set_type(include(&g["Type"]))
            .set_source_type(include(&g["SourceType"]));
        for s in g["SourceSegments"].as_array().into_iter().flatten() {
            b = b.source_segments(
                SourceSegment::builder()
                    .segment_definition_name(s["SegmentDefinitionName"].as_str().unwrap())
                    .build(),
            );
        }
        for d in g["Dimensions"].as_array().into_iter().flatten() {
            b = b.dimensions(dimension(d));
        }
        out = out.groups(b.build());
    }
    out.build()
}

fn values(v: &serde_json::Value) -> Vec<String> {
    v["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn dimension(d: &serde_json::Value) -> aws_sdk_customerprofiles::types::Dimension {
    use aws_sdk_customerprofiles::types::*;
    let string = |v: &serde_json::Value| {
        ProfileDimension::builder()
            .dimension_type(StringDimensionType::from(
                v["DimensionType"].as_str().unwrap(),
            ))
            .set_values(Some(values(v)))
            .build()
            .unwrap()
    };
    let attribute = |v: &serde_json::Value| {
        AttributeDimension::builder()
            .dimension_type(AttributeDimensionType::from(
                v["DimensionType"].as_str().unwrap(),
            ))
            .set_values(Some(values(v)))
            .build()
            .unwrap()
    };
    if let Some(c) = d.get("CalculatedAttributes") {
        let map = c
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let range = v["ConditionOverrides"]["Range"].as_object().map(|r| {
                    let day = |k: &str| r.get(k).and_then(|n| n.as_i64()).map(|n| n as i32);
                    let range = RangeOverride::builder()
                        .set_start(day("Start"))
                        .set_end(day("End"))
                        .unit(RangeUnit::from(r["Unit"].as_str().unwrap()))
                        .build()
                        .unwrap();
                    ConditionOverrides::builder().range(range).build()
                });
                let a = CalculatedAttributeDimension::builder()
                    .dimension_type(AttributeDimensionType::from(
                        v["DimensionType"].as_str().unwrap(),
                    ))
                    .set_values(Some(values(v)))
                    .set_condition_overrides(range)
                    .build()
                    .unwrap();
                (k.clone(), a)
            })
            .collect();
        return Dimension::CalculatedAttributes(map);
    }
    let p = &d["ProfileAttributes"];
    let mut b = ProfileAttributes::builder();
    for (field, v) in p.as_object().unwrap() {
        b = match field.as_str() {
            "FirstName" => b.first_name(string(v)),
            "LastName" => b.last_name(string(v)),
            "EmailAddress" => b.email_address(string(v)),
            "BirthDate" => b.birth_date(
                DateDimension::builder()
                    .dimension_type(DateDimensionType::from(
                        v["DimensionType"].as_str().unwrap(),
                    ))
                    .set_values(Some(values(v)))
                    .build()
                    .unwrap(),
            ),
            "Address" | "ShippingAddress" => {
                let mut a = AddressDimension::builder();
                for (part, pv) in v.as_object().unwrap() {
                    a = match part.as_str() {
                        "City" => a.city(string(pv)),
                        "Country" => a.country(string(pv)),
                        other => panic!("address part {other} not mapped"),
                    };
                }
                if field == "Address" {
                    b.address(a.build())
                } else {
                    b.shipping_address(a.build())
                }
            }
            "Attributes" => {
                let mut b = b;
                for (k, av) in v.as_object().unwrap() {
                    b = b.attributes(k, attribute(av));
                }
                b
            }
            "ProfileType" => b.profile_type(
                ProfileTypeDimension::builder()
                    .dimension_type(ProfileTypeDimensionType::from(
                        v["DimensionType"].as_str().unwrap(),
                    ))
                    .values(ProfileType::from(v["Values"][0].as_str().unwrap()))
                    .build()
                    .unwrap(),
            ),
            other => panic!("field {other} not mapped"),
        };
    }
    Dimension::ProfileAttributes(b.build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_equal_duckdb_counts_for_thirty_definitions() {
    let python = tokio::task::spawn_blocking(|| python_with("duckdb-venv", &[DUCKDB], "duckdb"))
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/audience/profiles.py");
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(&python)
        .args([script, "generate"])
        .arg(dir.path())
        .arg(PROFILES.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let duck = Command::new(&python)
        .args([script, "duckdb"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let duck: BTreeMap<String, u64> = serde_json::from_slice(&duck.stdout).unwrap();

    let t = util::start().await;
    let cp = util::profiles_client(&t);
    cp.create_domain()
        .domain_name("gen")
        .default_expiration_days(30)
        .send()
        .await
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("profiles.jsonl")).unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for (i, line) in text.lines().enumerate() {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        let cp = cp.clone();
        sends.spawn(async move {
            let s = |k: &str| p[k].as_str().map(str::to_string);
            let mut req = cp
                .create_profile()
                .domain_name("gen")
                .set_first_name(s("FirstName"))
                .set_last_name(s("LastName"))
                .set_birth_date(s("BirthDate"))
                .set_email_address(s("EmailAddress"))
                .set_profile_type(s("ProfileType").map(|t| ProfileType::from(t.as_str())));
            if let Some(c) = p["Address"]["City"].as_str() {
                req = req.address(Address::builder().city(c).build());
            }
            if let Some(c) = p["ShippingAddress"]["Country"].as_str() {
                req = req.shipping_address(Address::builder().country(c).build());
            }
            for (k, v) in p["Attributes"].as_object().into_iter().flatten() {
                req = req.attributes(k, v.as_str().unwrap());
            }
            req.send()
                .await
                .unwrap_or_else(|e| panic!("profile {i}: {:?}", e.into_service_error()));
        });
        // At most 16 in flight.
        while sends.len() >= 16 {
            sends.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap();
    }

    let definitions: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("definitions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(definitions.len(), 30);
    for d in &definitions {
        let name = d["name"].as_str().unwrap();
        cp.create_segment_definition()
            .domain_name("gen")
            .segment_definition_name(name)
            .display_name(name)
            .segment_groups(groups(&d["groups"]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {:?}", e.into_service_error()));
    }
    let mut distinct = BTreeSet::new();
    for d in &definitions {
        let name = d["name"].as_str().unwrap();
        let id = cp
            .create_segment_estimate()
            .domain_name("gen")
            .segment_query(
                SegmentGroupStructure::builder()
                    .groups(
                        aws_sdk_customerprofiles::types::Group::builder()
                            .source_segments(
                                SourceSegment::builder()
                                    .segment_definition_name(name)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .estimate_id()
            .unwrap()
            .to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let done = loop {
            let got = cp
                .get_segment_estimate()
                .domain_name("gen")
                .estimate_id(&id)
                .send()
                .await
                .unwrap();
            if got.status() != Some(&EstimateStatus::Running) {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "{name}: never ended");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(
            done.status(),
            Some(&EstimateStatus::Succeeded),
            "{name}: {done:?}"
        );
        let ours: u64 = done.estimate().unwrap().parse().unwrap();
        assert_eq!(ours, duck[name], "definition {name}");
        distinct.insert(ours);
    }
    assert!(
        distinct.len() >= 20,
        "the definitions select different audiences: {distinct:?}"
    );
}
