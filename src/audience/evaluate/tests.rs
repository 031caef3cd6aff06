//! Each rule of the evaluator, pinned with small hand-made endpoints.

use super::*;

fn seg(json: &str) -> WriteSegmentRequest {
    serde_json::from_str(json).unwrap()
}

fn as_of() -> OffsetDateTime {
    parse_instant("2026-11-28T12:00:00Z").unwrap()
}

/// Every node of `program`, evaluated for one endpoint record.
fn run(program: &Program, endpoint: &str) -> Vec<bool> {
    let mut record = program.record();
    program.read(endpoint, &mut record).unwrap();
    let mut out = Vec::new();
    program.run(&record, &mut out);
    out
}

/// Evaluates one segment definition (named "s") against an endpoint.
fn check(def: &str, endpoint: &str) -> bool {
    let segments = BTreeMap::from([("s".to_string(), seg(def))]);
    let mut program = Program::new(as_of());
    let node = program.add(0, &Catalog::of(&segments), "s");
    run(&program, endpoint)[node]
}

fn attr(kind: &str, values: &str) -> String {
    format!(
        r#"{{"Dimensions":{{"Attributes":{{"a":{{"AttributeType":"{kind}","Values":{values}}}}}}}}}"#
    )
}

#[test]
fn set_dimensions_include_and_exclude_exactly() {
    let platform = r#"{"Dimensions":{"Demographic":{"Platform":{"Values":["iOS"]}}}}"#;
    assert!(check(platform, r#"{"Demographic":{"Platform":"iOS"}}"#));
    assert!(
        !check(platform, r#"{"Demographic":{"Platform":"ios"}}"#),
        "case-sensitive"
    );
    assert!(!check(platform, r#"{}"#), "missing never matches INCLUSIVE");
    let not_us =
        r#"{"Dimensions":{"Location":{"Country":{"DimensionType":"EXCLUSIVE","Values":["US"]}}}}"#;
    assert!(check(not_us, r#"{"Location":{"Country":"CA"}}"#));
    assert!(!check(not_us, r#"{"Location":{"Country":"US"}}"#));
    assert!(check(not_us, r#"{}"#), "missing satisfies EXCLUSIVE");
    let sms = r#"{"Dimensions":{"Demographic":{"Channel":{"Values":["SMS"]}}}}"#;
    assert!(
        check(sms, r#"{"ChannelType":"SMS"}"#),
        "Channel compares with ChannelType"
    );
    let device = r#"{"Dimensions":{"Demographic":{"DeviceType":{"Values":["PHONE"]}}}}"#;
    assert!(
        !check(device, r#"{"Demographic":{"Platform":"PHONE"}}"#),
        "DeviceType has no endpoint field"
    );
    let not_device = r#"{"Dimensions":{"Demographic":{"DeviceType":{"DimensionType":"EXCLUSIVE","Values":["PHONE"]}}}}"#;
    assert!(check(not_device, r#"{}"#));
}

#[test]
fn attributes_over_lists_of_values() {
    let inc = attr("INCLUSIVE", r#"["gold","platinum"]"#);
    assert!(
        check(&inc, r#"{"Attributes":{"a":["silver","gold"]}}"#),
        "any value matching any criterion"
    );
    assert!(
        !check(&inc, r#"{"Attributes":{"a":[]}}"#),
        "an empty list is like a missing attribute"
    );
    assert!(!check(&inc, r#"{}"#));
    let exc = attr("EXCLUSIVE", r#"["gold"]"#);
    assert!(!check(&exc, r#"{"Attributes":{"a":["silver","gold"]}}"#));
    assert!(check(&exc, r#"{"Attributes":{"a":["silver"]}}"#));
    assert!(check(&exc, r#"{"Attributes":{"a":[]}}"#));
    assert!(check(&exc, r#"{}"#));
    let contains = attr("CONTAINS", r#"["@example.com"]"#);
    assert!(check(
        &contains,
        r#"{"Attributes":{"a":["ann@example.com"]}}"#
    ));
    assert!(!check(
        &contains,
        r#"{"Attributes":{"a":["ann@example.org"]}}"#
    ));
    let user = r#"{"Dimensions":{"UserAttributes":{"tier":{"Values":["vip"]}}}}"#;
    assert!(check(
        user,
        r#"{"User":{"UserAttributes":{"tier":["vip"]}}}"#
    ));
    assert!(
        !check(user, r#"{"Attributes":{"tier":["vip"]}}"#),
        "user attributes are their own map"
    );
}

#[test]
fn dates_before_after_on_and_between_including_their_edges() {
    let before = attr("BEFORE", r#"["2026-06-01T00:00:00Z"]"#);
    assert!(check(
        &before,
        r#"{"Attributes":{"a":["2026-05-31T23:59:59Z"]}}"#
    ));
    assert!(
        !check(&before, r#"{"Attributes":{"a":["2026-06-01T00:00:00Z"]}}"#),
        "strict"
    );
    assert!(!check(&before, r#"{"Attributes":{"a":["not a date"]}}"#));
    let after = attr("AFTER", r#"["2026-06-01T00:00:00Z"]"#);
    assert!(check(
        &after,
        r#"{"Attributes":{"a":["2026-06-01T00:00:01Z"]}}"#
    ));
    assert!(!check(
        &after,
        r#"{"Attributes":{"a":["2026-06-01T00:00:00Z"]}}"#
    ));
    let between = attr(
        "BETWEEN",
        r#"["2026-01-01T00:00:00Z","2026-02-01T00:00:00Z"]"#,
    );
    for (v, inside) in [
        ("2026-01-01T00:00:00Z", true),
        ("2026-02-01T00:00:00Z", true),
        ("2025-12-31T23:59:59Z", false),
        ("2026-02-01T00:00:01Z", false),
    ] {
        assert_eq!(
            check(&between, &format!(r#"{{"Attributes":{{"a":["{v}"]}}}}"#)),
            inside,
            "{v}"
        );
    }
    let not_between = attr(
        "NOT_BETWEEN",
        r#"["2026-01-01T00:00:00Z","2026-02-01T00:00:00Z"]"#,
    );
    assert!(!check(
        &not_between,
        r#"{"Attributes":{"a":["2026-01-15T00:00:00Z"]}}"#
    ));
    assert!(check(
        &not_between,
        r#"{"Attributes":{"a":["2026-03-01T00:00:00Z"]}}"#
    ));
    assert!(
        check(&not_between, r#"{}"#),
        "the negation of BETWEEN, missing included"
    );
    // ON compares UTC calendar dates: 23:30 at UTC-5 on March 1st is March 2nd in UTC.
    let on = attr("ON", r#"["2026-03-01T23:30:00-05:00"]"#);
    assert!(check(
        &on,
        r#"{"Attributes":{"a":["2026-03-02T08:00:00Z"]}}"#
    ));
    assert!(
        !check(&on, r#"{"Attributes":{"a":["2026-03-02T01:00:00+02:00"]}}"#),
        "that is March 1st, 23:00 UTC"
    );
}

#[test]
fn metrics_with_each_operator() {
    for (op, value, expected) in [
        ("GREATER_THAN", 10.0, false),
        ("GREATER_THAN_OR_EQUAL", 10.0, true),
        ("LESS_THAN", 10.0, false),
        ("LESS_THAN_OR_EQUAL", 10.0, true),
        ("EQUAL", 10.0, true),
        ("GREATER_THAN", 9.5, true),
        ("LESS_THAN", 10.5, true),
    ] {
        let def = format!(
            r#"{{"Dimensions":{{"Metrics":{{"m":{{"ComparisonOperator":"{op}","Value":{value}}}}}}}}}"#
        );
        assert_eq!(
            check(&def, r#"{"Metrics":{"m":10}}"#),
            expected,
            "{op} {value}"
        );
        assert!(!check(&def, r#"{}"#), "a missing metric never matches");
    }
}

#[test]
fn gps_within_the_range_by_great_circle_distance() {
    // Seattle → a point ~25 km north; the range edge on either side of it.
    let d = distance_km(47.6062, -122.3321, 47.83, -122.3321);
    assert!((d - 24.9).abs() < 0.2, "{d}");
    let within = |range: f64| {
        format!(
            r#"{{"Dimensions":{{"Location":{{"GPSPoint":{{"Coordinates":{{"Latitude":47.6062,"Longitude":-122.3321}},"RangeInKilometers":{range}}}}}}}}}"#
        )
    };
    let point = r#"{"Location":{"Latitude":47.83,"Longitude":-122.3321}}"#;
    assert!(check(&within(d + 0.001), point));
    assert!(check(&within(d), point), "the edge is inside");
    assert!(!check(&within(d - 0.001), point));
    assert!(
        !check(&within(1000.0), r#"{"Location":{"Country":"US"}}"#),
        "no coordinates, no match"
    );
    let default = r#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":47.6062,"Longitude":-122.3321}}}}}"#;
    assert!(check(default, point), "the default range is 50 km");
    assert!(!check(
        default,
        r#"{"Location":{"Latitude":48.6,"Longitude":-122.3321}}"#
    ));
}

#[test]
fn recency_over_effective_date_at_the_duration_edge() {
    let active =
        r#"{"Dimensions":{"Behavior":{"Recency":{"RecencyType":"ACTIVE","Duration":"DAY_7"}}}}"#;
    let inactive =
        r#"{"Dimensions":{"Behavior":{"Recency":{"RecencyType":"INACTIVE","Duration":"DAY_7"}}}}"#;
    let at = |t: &str| format!(r#"{{"EffectiveDate":"{t}"}}"#);
    assert!(
        check(active, &at("2026-11-21T12:00:00Z")),
        "exactly 7 days before as-of is inside"
    );
    assert!(!check(active, &at("2026-11-21T11:59:59Z")));
    assert!(check(inactive, &at("2026-11-21T11:59:59Z")));
    assert!(
        !check(active, &at("2026-11-29T00:00:00Z")),
        "after as-of is not yet"
    );
    assert!(check(inactive, "{}"), "no EffectiveDate: inactive");
    let day =
        r#"{"Dimensions":{"Behavior":{"Recency":{"RecencyType":"ACTIVE","Duration":"HR_24"}}}}"#;
    assert!(check(day, &at("2026-11-27T12:00:00Z")));
    assert!(!check(day, &at("2026-11-27T11:00:00Z")));
}

#[test]
fn every_criterion_of_a_dimensions_object_must_hold() {
    let def = r#"{"Dimensions":{"Demographic":{"Platform":{"Values":["iOS"]}},"Location":{"Country":{"Values":["US"]}}}}"#;
    assert!(check(
        def,
        r#"{"Demographic":{"Platform":"iOS"},"Location":{"Country":"US"}}"#
    ));
    assert!(!check(
        def,
        r#"{"Demographic":{"Platform":"iOS"},"Location":{"Country":"CA"}}"#
    ));
    assert!(
        check(r#"{"Name":"everyone"}"#, "{}"),
        "no criteria: every endpoint"
    );
}

#[test]
fn groups_combine_dimensions_base_segments_and_groups() {
    let segments = BTreeMap::from([
        (
            "ios".to_string(),
            seg(r#"{"Dimensions":{"Demographic":{"Platform":{"Values":["iOS"]}}}}"#),
        ),
        (
            "us".to_string(),
            seg(r#"{"Dimensions":{"Location":{"Country":{"Values":["US"]}}}}"#),
        ),
        (
            "both".to_string(),
            seg(
                r#"{"SegmentGroups":{"Groups":[{"SourceType":"ALL","SourceSegments":[{"Ref":"ios"},{"Id":"id-us"}]}]}}"#,
            ),
        ),
        (
            "either".to_string(),
            seg(
                r#"{"SegmentGroups":{"Groups":[{"SourceType":"ANY","SourceSegments":[{"Ref":"ios"},{"Ref":"us"}]}]}}"#,
            ),
        ),
        (
            "neither".to_string(),
            seg(
                r#"{"SegmentGroups":{"Groups":[{"SourceType":"NONE","SourceSegments":[{"Ref":"ios"},{"Ref":"us"}]}]}}"#,
            ),
        ),
        (
            "nested".to_string(),
            seg(
                r#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Ref":"both"}],"Type":"ANY","Dimensions":[{"Metrics":{"m":{"ComparisonOperator":"GREATER_THAN","Value":5}}},{"Attributes":{"vip":{"Values":["yes"]}}}]}]}}"#,
            ),
        ),
        (
            "two-groups-none".to_string(),
            seg(
                r#"{"SegmentGroups":{"Include":"NONE","Groups":[{"SourceSegments":[{"Ref":"ios"}]},{"SourceSegments":[{"Ref":"us"}]}]}}"#,
            ),
        ),
    ]);
    let mut catalog = Catalog::of(&segments);
    catalog
        .key_of_id
        .insert("id-us".to_string(), "us".to_string());
    let mut program = Program::new(as_of());
    let names = [
        "both",
        "either",
        "neither",
        "nested",
        "two-groups-none",
        "unknown",
    ];
    let nodes = names.map(|n| program.add(0, &catalog, n));
    assert_eq!(
        program.add(0, &catalog, "both"),
        nodes[0],
        "a segment compiles once"
    );
    let ios_us =
        r#"{"Demographic":{"Platform":"iOS"},"Location":{"Country":"US"},"Metrics":{"m":9}}"#;
    let ios_ca = r#"{"Demographic":{"Platform":"iOS"},"Location":{"Country":"CA"},"Attributes":{"vip":["yes"]}}"#;
    let android_ca = r#"{"Demographic":{"Platform":"Android"},"Location":{"Country":"CA"}}"#;
    let table = [
        [true, false, false],
        [true, true, false],
        [false, false, true],
        [true, false, false],
        [false, false, true],
        [false, false, false], // unknown: matches nothing
    ];
    let results = [ios_us, ios_ca, android_ca].map(|e| run(&program, e));
    for (k, expected) in table.iter().enumerate() {
        let got = [0, 1, 2].map(|e| results[e][nodes[k]]);
        assert_eq!(&got, expected, "{}", names[k]);
    }
}

#[test]
fn endpoint_records_read_from_export_lines_ignore_unknown_fields() {
    let segments = BTreeMap::from([(
        "s".to_string(),
        seg(
            r#"{"Dimensions":{"Demographic":{"Channel":{"Values":["EMAIL"]},"Platform":{"Values":["iOS"]}},"Location":{"Country":{"Values":["US"]},"GPSPoint":{"Coordinates":{"Latitude":47.6,"Longitude":-122.3},"RangeInKilometers":1}},"Attributes":{"a":{"Values":["1"]}},"Metrics":{"m":{"ComparisonOperator":"EQUAL","Value":1.5}},"UserAttributes":{"t":{"Values":["v"]}},"Behavior":{"Recency":{"Duration":"DAY_30","RecencyType":"ACTIVE"}}}}"#,
        ),
    )]);
    let mut program = Program::new(as_of());
    let node = program.add(0, &Catalog::of(&segments), "s");
    let line = r#"{"ApplicationId":"x","ChannelType":"EMAIL","Address":"a@b.c","CohortId":"42","Demographic":{"Platform":"iOS","Timezone":"UTC"},"Location":{"Country":"US","City":"Seattle","Latitude":47.6,"Longitude":-122.3},"Attributes":{"a":["1"],"other":["x"]},"Metrics":{"m":1.5,"n":2},"User":{"UserId":"u1","UserAttributes":{"t":["v"]}},"EffectiveDate":"2026-11-20T00:00:00Z","EndpointStatus":"ACTIVE","OptOut":"NONE","Id":"e1","RequestId":null}"#;
    assert!(run(&program, line)[node], "every field read");
    // Escaped strings are read like plain ones.
    let escaped = line.replace(r#""EMAIL""#, r#""\u0045MAIL""#);
    assert!(run(&program, &escaped)[node]);
    // Null stands for missing.
    let nulls = r#"{"ChannelType":null,"Demographic":null,"Location":null,"Attributes":{"a":null},"Metrics":null,"User":null}"#;
    assert!(!run(&program, nulls)[node]);
    let null_metric = line.replace(r#""m":1.5"#, r#""m":null"#);
    assert!(
        !run(&program, &null_metric)[node],
        "a null metric is missing"
    );
}

#[test]
fn lines_that_are_not_endpoint_records_are_refused_whatever_the_segments() {
    let empty = Program::new(as_of());
    let segments = BTreeMap::from([(
        "s".to_string(),
        seg(r#"{"Dimensions":{"Attributes":{"a":{"Values":["1"]}}}}"#),
    )]);
    let mut reading = Program::new(as_of());
    reading.add(0, &Catalog::of(&segments), "s");
    let bad = [
        "not json",
        "[1,2]",
        r#"{"ChannelType":5}"#,
        r#"{"Attributes":{"a":"1"}}"#,
        r#"{"Attributes":{"unused":[1]}}"#,
        r#"{"Attributes":{"a":["1",null]}}"#,
        r#"{"Metrics":{"unused":"many"}}"#,
        r#"{"Location":{"Latitude":"north"}}"#,
        r#"{"User":{"UserAttributes":[]}}"#,
        r#"{"ChannelType":"SMS","ChannelType":"EMAIL"}"#,
        r#"{"ChannelType":"SMS"} trailing"#,
        r#"{"ChannelType":"SMS""#,
        // Read for membership in imported segments: strings or null.
        r#"{"Id":7}"#,
        r#"{"User":{"UserId":{}}}"#,
    ];
    for program in [&empty, &reading] {
        let mut record = program.record();
        for line in bad {
            assert!(program.read(line, &mut record).is_err(), "accepted {line}");
        }
        for line in [
            r#"{"Attributes":{"a":["1"]}}"#,
            r#"{"Address":["not read"],"Id":"e1","User":{"UserId":null}}"#,
        ] {
            assert!(program.read(line, &mut record).is_ok(), "{line}");
        }
    }
}

#[test]
fn a_record_evaluated_in_a_batch_matches_as_it_does_alone() {
    // Every kind of node and combination: several criteria in one node, groups of each
    // SourceType and Type, each Include, empty groups, unknown and imported bases.
    let defs = [
        (
            "ios",
            r#"{"Dimensions":{"Demographic":{"Platform":{"Values":["iOS"]}}}}"#,
        ),
        (
            "us",
            r#"{"Dimensions":{"Location":{"Country":{"Values":["US","CA"]}}}}"#,
        ),
        (
            "plan",
            r#"{"Dimensions":{"Attributes":{"p":{"AttributeType":"EXCLUSIVE","Values":["free"]}}}}"#,
        ),
        (
            "three",
            r#"{"Dimensions":{"Demographic":{"Channel":{"Values":["SMS"]}},"Attributes":{"p":{"AttributeType":"CONTAINS","Values":["re"]}},"Metrics":{"m":{"ComparisonOperator":"GREATER_THAN","Value":4}}}}"#,
        ),
        (
            "dated",
            r#"{"Dimensions":{"Attributes":{"d":{"AttributeType":"NOT_BETWEEN","Values":["2026-01-01T00:00:00Z","2026-06-30T00:00:00Z"]}},"Behavior":{"Recency":{"Duration":"DAY_7","RecencyType":"ACTIVE"}}}}"#,
        ),
        (
            "near",
            r#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":47.6,"Longitude":-122.3},"RangeInKilometers":30}}}}"#,
        ),
        (
            "all-of",
            r#"{"SegmentGroups":{"Groups":[{"SourceType":"ALL","SourceSegments":[{"Ref":"ios"},{"Ref":"us"},{"Ref":"plan"}]}]}}"#,
        ),
        (
            "any-of",
            r#"{"SegmentGroups":{"Groups":[{"SourceType":"ANY","SourceSegments":[{"Ref":"three"},{"Ref":"near"}],"Type":"ANY","Dimensions":[{"Metrics":{"m":{"ComparisonOperator":"LESS_THAN","Value":3}}},{"Attributes":{"p":{"Values":["premium"]}}}]}]}}"#,
        ),
        (
            "none-of",
            r#"{"SegmentGroups":{"Include":"ANY","Groups":[{"SourceType":"NONE","SourceSegments":[{"Ref":"ios"},{"Ref":"dated"}],"Type":"NONE","Dimensions":[{"Location":{"Country":{"Values":["MX"]}}},{"Demographic":{"Platform":{"Values":["Android"]}}}]},{"SourceSegments":[{"Ref":"vip"}]}]}}"#,
        ),
        (
            "not-any",
            r#"{"SegmentGroups":{"Include":"NONE","Groups":[{"SourceSegments":[{"Ref":"all-of"}]},{"Type":"ALL","Dimensions":[{"Demographic":{"Channel":{"Values":["EMAIL"]}}},{}]},{"SourceSegments":[{"Ref":"missing"}]}]}}"#,
        ),
        (
            "empty",
            r#"{"SegmentGroups":{"Include":"ANY","Groups":[]}}"#,
        ),
        ("every", r#"{"Dimensions":{}}"#),
    ];
    let segments: BTreeMap<String, WriteSegmentRequest> =
        defs.iter().map(|(k, d)| (k.to_string(), seg(d))).collect();
    let mut catalog = Catalog::of(&segments);
    catalog.imported.insert(
        "vip".into(),
        Arc::new(Members {
            ids: HashSet::from(["e3".into(), "e7".into()]),
            users: HashSet::from(["u2".into()]),
        }),
    );
    let mut program = Program::new(as_of());
    let constant: Vec<NodeId> = defs
        .iter()
        .map(|(k, _)| program.add(0, &catalog, k))
        .zip(defs)
        .filter(|(_, (k, _))| ["every", "empty"].contains(k))
        .map(|(node, _)| node)
        .collect();
    let mut rng = fastrand::Rng::with_seed(17);
    let pick = |rng: &mut fastrand::Rng, pool: &[&str]| pool[rng.usize(..pool.len())].to_string();
    let lines: Vec<String> = (0..2_000)
        .map(|i| {
            let mut r = serde_json::Map::new();
            let mut put = |k: &str, v: serde_json::Value, rng: &mut fastrand::Rng| {
                if rng.u8(..5) > 0 {
                    r.insert(k.into(), v);
                }
            };
            put("Id", format!("e{}", i % 10).into(), &mut rng);
            put(
                "ChannelType",
                pick(&mut rng, &["SMS", "EMAIL"]).into(),
                &mut rng,
            );
            let platform = pick(&mut rng, &["iOS", "Android", "ios"]);
            put(
                "Demographic",
                serde_json::json!({ "Platform": platform }),
                &mut rng,
            );
            let country = pick(&mut rng, &["US", "CA", "MX"]);
            let lat = 47.6 + rng.f64() * 0.6 - 0.3;
            put(
                "Location",
                serde_json::json!({"Country": country, "Latitude": lat, "Longitude": -122.3}),
                &mut rng,
            );
            let p: Vec<String> = (0..rng.usize(..3))
                .map(|_| pick(&mut rng, &["free", "premium", "trial"]))
                .collect();
            let d: Vec<String> = (0..rng.usize(..3))
                .map(|_| {
                    pick(
                        &mut rng,
                        &["2025-12-31T23:00:00Z", "2026-03-01T00:00:00Z", "bad"],
                    )
                })
                .collect();
            put(
                "Attributes",
                serde_json::json!({ "p": p, "d": d }),
                &mut rng,
            );
            put("Metrics", serde_json::json!({ "m": rng.u8(..8) }), &mut rng);
            let effective = pick(&mut rng, &["2026-11-25T00:00:00Z", "2026-10-01T00:00:00Z"]);
            put("EffectiveDate", effective.into(), &mut rng);
            put(
                "User",
                serde_json::json!({ "UserId": format!("u{}", i % 4) }),
                &mut rng,
            );
            serde_json::Value::Object(r).to_string()
        })
        .collect();
    let alone: Vec<Vec<bool>> = lines.iter().map(|l| run(&program, l)).collect();
    // Each node holds for some records and not for others (but those that cannot).
    for node in 0..program.len() {
        let n = alone.iter().filter(|o| o[node]).count();
        let kind = &program.nodes[node];
        if !constant.contains(&node) && !matches!(kind, Node::Never) {
            assert!(
                n > 0 && n < lines.len(),
                "node {node} ({kind:?}) matched {n}"
            );
        }
    }
    let mut at = 0;
    let mut masks = Vec::new();
    while at < lines.len() {
        let size = rng.usize(1..=BATCH).min(lines.len() - at);
        let mut records: Vec<Record<'_>> = (0..size).map(|_| program.record()).collect();
        for (r, line) in records.iter_mut().zip(&lines[at..at + size]) {
            program.read(line, r).unwrap();
        }
        program.run_batch(&records, &mut masks);
        for (i, want) in alone[at..at + size].iter().enumerate() {
            let got: Vec<bool> = masks.iter().map(|m| m >> i & 1 != 0).collect();
            assert_eq!(
                &got,
                want,
                "record {} of a batch of {size}: {}",
                i,
                lines[at + i]
            );
        }
        for m in &masks {
            assert_eq!(
                m.checked_shr(size as u32).unwrap_or(0),
                0,
                "no bit past the batch"
            );
        }
        at += size;
    }
    program.run_batch(&[], &mut masks);
    assert!(
        masks.iter().all(|m| *m == 0),
        "an empty batch matches nothing"
    );
}

#[test]
fn more_values_than_fit_in_a_word_compare_as_text() {
    let many = |prefix: &str| {
        let v: Vec<String> = (0..70).map(|i| format!("\"{prefix}{i}\"")).collect();
        format!("[{}]", v.join(","))
    };
    let segments = BTreeMap::from([
        ("a-few".to_string(), seg(&attr("EXCLUSIVE", r#"["v3"]"#))),
        ("b-many".to_string(), seg(&attr("INCLUSIVE", &many("v")))),
        (
            "c-countries".to_string(),
            seg(&format!(
                r#"{{"Dimensions":{{"Location":{{"Country":{{"Values":{}}}}}}}}}"#,
                many("C")
            )),
        ),
        (
            "d-us".to_string(),
            seg(r#"{"Dimensions":{"Location":{"Country":{"Values":["US"]}}}}"#),
        ),
    ]);
    let mut program = Program::new(as_of());
    let catalog = Catalog::of(&segments);
    let nodes: Vec<NodeId> = segments
        .keys()
        .map(|k| program.add(0, &catalog, k))
        .collect();
    let kinds: Vec<Option<u64>> = nodes
        .iter()
        .map(|n| match &program.nodes[*n] {
            Node::All(c) => match &c[..] {
                [Criterion::Listed { bits, .. } | Criterion::Set { bits, .. }] => *bits,
                _ => unreachable!(),
            },
            _ => unreachable!(),
        })
        .collect();
    assert!(kinds[0].is_some() && kinds[3].is_some(), "{kinds:?}");
    assert!(kinds[1].is_none() && kinds[2].is_none(), "{kinds:?}");
    for (line, want) in [
        (
            r#"{"Attributes":{"a":["v65"]},"Location":{"Country":"C69"}}"#,
            [true, true, true, false],
        ),
        (
            r#"{"Attributes":{"a":["x","v3"]},"Location":{"Country":"US"}}"#,
            [false, true, false, true],
        ),
        (
            r#"{"Attributes":{"a":["v70"]},"Location":{"Country":"C70"}}"#,
            [true, false, false, false],
        ),
        (r#"{}"#, [true, false, false, false]),
    ] {
        let out = run(&program, line);
        assert_eq!(
            nodes.iter().map(|n| out[*n]).collect::<Vec<_>>(),
            want,
            "{line}"
        );
    }
}
