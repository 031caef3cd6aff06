//! The equality corpus: 37 segments covering every dimension family, groups, nested bases
//! and an imported segment, and endpoint records generated to hit every edge the rules name
//! (missing, null, empty lists, bad dates, time zones, GPS edges, duplicate user ids, names
//! and values with quotes, backslashes, dots and unicode).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Map, Value};

pub const APP: &str = "0123456789abcdef0123456789abcdef";
pub const AS_OF: &str = "2026-11-28T00:00:00Z";
const SEATTLE: (f64, f64) = (47.6062, -122.3321);
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Attribute names that must be quoted: a quote, a double quote, a backslash, a dot,
/// unicode.
pub const QUOTED: &str = "it's \"quoted\"";
pub const BACKSLASH: &str = "back\\slash";
pub const DOTTED: &str = "a.b";
pub const UNICODE: &str = "ünï-cødé ✓";
/// An attribute name that ends a literal early if quoted naively: a quote, then a
/// backslash at its end.
pub const HOSTILE_NAME: &str = "name'\\";
/// Values that break a literal whose quoting is wrong for the engine or its settings: a
/// backslash at the end (it swallows the closing quote where `\` escapes), an injection,
/// a backslash before a quote, doubled quotes, newlines, a tab, unicode.
pub const HOSTILE: &[&str] = &[
    "ends\\",
    "'; DROP TABLE endpoints; --",
    "\\'",
    "''",
    "\\\\",
    "two\nlines\r\n",
    "tab\there",
    "ünï'cødé\\✓",
];

/// (name, spec as YAML flow) of every segment; an imported one is added by [`write`].
pub fn segments() -> Vec<(&'static str, String)> {
    let q = |s: &str| serde_json::to_string(s).unwrap(); // JSON strings are YAML strings
    vec![
        ("us", "Dimensions: {Location: {Country: {Values: [US]}}}".into()),
        ("not-us", "Dimensions: {Location: {Country: {DimensionType: EXCLUSIVE, Values: [US]}}}".into()),
        ("north-america", "Dimensions: {Location: {Country: {Values: [US, CA, MX]}}}".into()),
        ("ios", "Dimensions: {Demographic: {Platform: {Values: [iOS]}}}".into()),
        ("not-android", "Dimensions: {Demographic: {Platform: {DimensionType: EXCLUSIVE, Values: [Android]}}}".into()),
        ("sms-email", "Dimensions: {Demographic: {Channel: {Values: [SMS, EMAIL]}}}".into()),
        ("phones", "Dimensions: {Demographic: {DeviceType: {Values: [PHONE]}}}".into()),
        ("not-tablets", "Dimensions: {Demographic: {DeviceType: {DimensionType: EXCLUSIVE, Values: [TABLET]}}}".into()),
        ("apple-v2", "Dimensions: {Demographic: {AppVersion: {Values: ['2.0', '2.1']}, Make: {Values: [Apple]}, Model: {DimensionType: EXCLUSIVE, Values: [iPhone 8]}}}".into()),
        ("premium", "Dimensions: {Attributes: {plan: {Values: [premium]}}}".into()),
        ("not-free", "Dimensions: {Attributes: {plan: {AttributeType: EXCLUSIVE, Values: [free]}}}".into()),
        ("likes-music", "Dimensions: {Attributes: {interests: {AttributeType: CONTAINS, Values: [usic, Jazz]}}}".into()),
        ("quoted-names", format!(
            "Dimensions: {{Attributes: {{{}: {{Values: [{}, {}]}}, {}: {{AttributeType: EXCLUSIVE, Values: [{}]}}}}}}",
            q(QUOTED), q("O'Brien"), q("say \"hi\""), q(BACKSLASH), q("C:\\path")
        )),
        ("hostile-literals", format!(
            "Dimensions: {{Attributes: {{{}: {{Values: [{}]}}, {}: {{AttributeType: CONTAINS, Values: [{}, {}]}}}}}}",
            q(BACKSLASH), HOSTILE.iter().map(|v| q(v)).collect::<Vec<_>>().join(", "),
            q(HOSTILE_NAME), q("\\"), q("'")
        )),
        ("dotted-unicode", format!(
            "Dimensions: {{Attributes: {{{}: {{Values: [x]}}, {}: {{AttributeType: CONTAINS, Values: [{}]}}}}}}",
            q(DOTTED), q(UNICODE), q("日本")
        )),
        ("signed-before-june", "Dimensions: {Attributes: {signup: {AttributeType: BEFORE, Values: ['2026-06-01T00:00:00Z']}}}".into()),
        ("signed-after-sept", "Dimensions: {Attributes: {signup: {AttributeType: AFTER, Values: ['2026-09-01T00:00:00Z']}}}".into()),
        ("signed-march-1", "Dimensions: {Attributes: {signup: {AttributeType: ON, Values: ['2026-03-01T12:00:00Z']}}}".into()),
        ("signed-q2", "Dimensions: {Attributes: {signup: {AttributeType: BETWEEN, Values: ['2026-04-01T00:00:00Z', '2026-06-30T23:59:59Z']}}}".into()),
        ("signed-outside-q2", "Dimensions: {Attributes: {signup: {AttributeType: NOT_BETWEEN, Values: ['2026-04-01T00:00:00Z', '2026-06-30T23:59:59Z']}}}".into()),
        ("birthday-march-2", "Dimensions: {UserAttributes: {birthday: {AttributeType: ON, Values: ['2026-03-01T23:00:00-02:00']}}}".into()),
        ("heavy", "Dimensions: {Metrics: {sessions: {ComparisonOperator: GREATER_THAN_OR_EQUAL, Value: 20}}}".into()),
        ("spend-100", "Dimensions: {Metrics: {spend: {ComparisonOperator: EQUAL, Value: 100}}}".into()),
        ("low-score", "Dimensions: {Metrics: {score.v2: {ComparisonOperator: LESS_THAN, Value: 0.5}, sessions: {ComparisonOperator: LESS_THAN_OR_EQUAL, Value: 10}}}".into()),
        ("big-spender", "Dimensions: {Metrics: {spend: {ComparisonOperator: GREATER_THAN, Value: 1000}}}".into()),
        ("gold-tier", "Dimensions: {UserAttributes: {tier: {Values: [gold, platinum]}}}".into()),
        ("near-seattle", "Dimensions: {Location: {GPSPoint: {Coordinates: {Latitude: 47.6062, Longitude: -122.3321}, RangeInKilometers: 50}}}".into()),
        ("near-seattle-default", "Dimensions: {Location: {GPSPoint: {Coordinates: {Latitude: 47.6062, Longitude: -122.3321}}}}".into()),
        ("at-the-store", "Dimensions: {Location: {GPSPoint: {Coordinates: {Latitude: 47.6062, Longitude: -122.3321}, RangeInKilometers: 0.001}}}".into()),
        ("active-week", "Dimensions: {Behavior: {Recency: {RecencyType: ACTIVE, Duration: DAY_7}}}".into()),
        ("inactive-day", "Dimensions: {Behavior: {Recency: {RecencyType: INACTIVE, Duration: HR_24}}}".into()),
        ("everyone", "Dimensions: {}".into()),
        ("us-ios-engaged", "SegmentGroups: {Include: ALL, Groups: [{SourceType: ALL, SourceSegments: [{Ref: us}, {Ref: ios}], Type: ANY, \
            Dimensions: [{Metrics: {sessions: {ComparisonOperator: GREATER_THAN_OR_EQUAL, Value: 20}}}, {Attributes: {plan: {Values: [premium]}}}]}]}".into()),
        ("lapsed-or-quiet", "SegmentGroups: {Include: ANY, Groups: [{SourceType: NONE, SourceSegments: [{Ref: active-week}, {Ref: premium}]}, \
            {Type: NONE, Dimensions: [{Location: {Country: {Values: [US]}}}, {Metrics: {sessions: {ComparisonOperator: GREATER_THAN, Value: 5}}}]}]}".into()),
        ("nested", "SegmentGroups: {Include: NONE, Groups: [{SourceType: ANY, SourceSegments: [{Ref: us-ios-engaged}, {Ref: lapsed-or-quiet}]}, \
            {Dimensions: [{Behavior: {Recency: {RecencyType: INACTIVE, Duration: DAY_30}}}]}]}".into()),
        ("vip-in-us", "SegmentGroups: {Groups: [{SourceSegments: [{Ref: vip}], Dimensions: [{Location: {Country: {Values: [US]}}}]}]}".into()),
        ("vip-or-nested", "SegmentGroups: {Groups: [{SourceSegments: [{Ref: vip}, {Ref: nested}, {Id: ffffffffffffffffffffffffffffffff}]}]}".into()),
    ]
}

/// Segments whose members the tests compare (besides the counts of all).
pub const MEMBERS_OF: &[&str] = &[
    "signed-march-1",
    "near-seattle",
    "quoted-names",
    "hostile-literals",
    "nested",
    "vip-in-us",
    "active-week",
];

/// The imported segment's file: ids, a user id (every endpoint of that user), and a row
/// without an Id (its id derived from channel and address).
fn vip_csv() -> String {
    let mut s = String::from("ChannelType,Address,Id,User.UserId\n");
    for i in (0..600).step_by(7) {
        let _ = writeln!(s, "EMAIL,vip{i}@example.com,ep-{i},");
    }
    s.push_str("SMS,+15550100,,user-13\nEMAIL,derived@example.com,,\n");
    s
}

/// Writes the manifests (`DIR/manifests/`) and `records` endpoint records
/// (`DIR/endpoints.jsonl`).
pub fn write(dir: &Path, records: usize, seed: u64) {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    let mut docs: Vec<String> = segments()
        .iter()
        .map(|(name, spec)| segment_doc(name, spec))
        .collect();
    docs.push(format!(
        "apiVersion: segmentctl/v1\nkind: ImportedSegment\nmetadata: {{name: vip, application: {APP}}}\nspec:\n  Name: vip\nsource:\n  url: vip.csv\n  format: CSV\n"
    ));
    std::fs::write(m.join("segments.yaml"), docs.join("---\n")).unwrap();
    std::fs::write(m.join("vip.csv"), vip_csv()).unwrap();
    write_records(&dir.join("endpoints.jsonl"), records, seed);
}

pub fn segment_doc(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: {name}, application: {APP}}}\nspec:\n  Name: {name}\n  {spec}\n"
    )
}

/// Instants of every kind: exact bounds, offsets across midnight, fractions, lowercase,
/// a space, and values that are not instants.
const DATES: &[&str] = &[
    "2026-03-01T00:00:00Z",
    "2026-02-28T23:30:00-01:00",
    "2026-03-01T23:59:59.999999999Z",
    "2026-03-02T00:00:00+00:30",
    "2026-03-02T00:00:00Z",
    "2026-06-01T00:00:00Z",
    "2026-05-31T23:59:59.999999999Z",
    "2026-06-01T00:00:00.000000001Z",
    "2026-06-30T23:59:59Z",
    "2026-06-30T23:59:59.000000001Z",
    "2026-04-01T00:00:00Z",
    "2026-03-31T23:59:59.9999999999Z",
    "2026-09-01T00:00:00Z",
    "2026-09-01T00:00:00.5Z",
    "2026-09-01T02:00:00+02:00",
    "2026-03-01 12:00:00Z",
    "2026-03-01t12:00:00z",
    "2026-03-01T12:00:00.5+05:30",
    "2024-02-29T12:00:00Z",
    "2000-02-29T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z",
    "2100-02-29T00:00:00Z",
    "2026-03-01",
    "2026-03-01T24:00:00Z",
    "2026-03-01T12:00:60Z",
    "2026-03-01T12:00:00+24:00",
    "2026-03-01T12:00:00+0530",
    "2026-03-01T12:00:00",
    "2026-03-01X12:00:00Z",
    "2026-03-01T12:00:00.Z",
    "not a date",
    "",
];

/// EffectiveDate values around the recency windows of [`AS_OF`].
const EFFECTIVE: &[&str] = &[
    "2026-11-28T00:00:00Z",
    "2026-11-28T00:00:00.000000001Z",
    "2026-11-21T00:00:00Z",
    "2026-11-20T23:59:59.999999999Z",
    "2026-11-27T00:00:00Z",
    "2026-11-26T23:59:59Z",
    "2026-11-27T01:00:00+01:00",
    "2026-11-27T00:59:59+01:00",
    "2026-11-28T01:00:00+01:00",
    "2026-10-29T00:00:00Z",
    "2026-10-28T23:59:59Z",
    "2026-11-25T12:00:00Z",
    "2026-11-31T00:00:00Z",
    "yesterday",
];

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// A point `km` north (negative: south) of Seattle: on one meridian the haversine distance
/// is exactly the angle, so these land a metre inside and outside the ranges.
fn north_of_seattle(km: f64) -> (f64, f64) {
    (SEATTLE.0 + (km / EARTH_RADIUS_KM).to_degrees(), SEATTLE.1)
}

/// A value, or now and then null or missing (`None`).
fn sometimes(
    rng: &mut fastrand::Rng,
    value: impl FnOnce(&mut fastrand::Rng) -> Value,
) -> Option<Value> {
    match rng.u8(..100) {
        0..=4 => None,
        5..=7 => Some(Value::Null),
        _ => Some(value(rng)),
    }
}

fn strings(rng: &mut fastrand::Rng, pool: &[&str], max: usize) -> Value {
    let n = rng.usize(..=max);
    Value::Array((0..n).map(|_| json!(pick(rng, pool))).collect())
}

fn object(entries: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in entries {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

pub fn record(rng: &mut fastrand::Rng, i: usize) -> Value {
    let position = match rng.u8(..10) {
        0 => None,
        1 => Some(json!({"Latitude": SEATTLE.0})),
        2 => Some(json!({"Latitude": SEATTLE.0, "Longitude": SEATTLE.1})),
        3..=5 => {
            let km = *pick(
                rng,
                &[49.999, 50.001, -49.999, -50.001, 0.0005, 10.0, 120.0],
            );
            let (lat, lon) = north_of_seattle(km);
            Some(json!({"Latitude": lat, "Longitude": lon}))
        }
        _ => Some(json!({
            "Latitude": SEATTLE.0 + rng.f64() * 2.0 - 1.0,
            "Longitude": SEATTLE.1 + rng.f64() * 2.0 - 1.0,
        })),
    };
    let mut location = object(vec![(
        "Country",
        sometimes(rng, |rng| {
            json!(pick(rng, &["US", "CA", "MX", "FR", "us", "DE"]))
        }),
    )]);
    if let (Some(Value::Object(p)), Value::Object(l)) = (position, &mut location) {
        l.extend(p);
        l.insert("City".into(), json!("Seattle"));
    }
    let demographic = object(vec![
        (
            "Platform",
            sometimes(rng, |rng| json!(pick(rng, &["iOS", "Android", "ios"]))),
        ),
        (
            "AppVersion",
            sometimes(rng, |rng| json!(pick(rng, &["1.0", "2.0", "2.1"]))),
        ),
        (
            "Make",
            sometimes(rng, |rng| json!(pick(rng, &["Apple", "Samsung", "apple"]))),
        ),
        (
            "Model",
            sometimes(rng, |rng| {
                json!(pick(rng, &["iPhone 8", "iPhone 15", "Galaxy"]))
            }),
        ),
        ("Timezone", Some(json!("America/Los_Angeles"))),
    ]);
    let attributes = match rng.u8(..20) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!({})),
        _ => Some(object(vec![
            (
                "plan",
                sometimes(rng, |rng| {
                    strings(rng, &["free", "premium", "trial", "Premium"], 2)
                }),
            ),
            (
                "interests",
                sometimes(rng, |rng| {
                    strings(rng, &["music", "Music", "jazz-Jazz", "sport", ""], 3)
                }),
            ),
            ("signup", sometimes(rng, |rng| strings(rng, DATES, 3))),
            (
                QUOTED,
                sometimes(rng, |rng| {
                    strings(rng, &["O'Brien", "say \"hi\"", "plain"], 2)
                }),
            ),
            (
                BACKSLASH,
                sometimes(rng, |rng| {
                    let mut pool = vec!["C:\\path", "C:/path", "C:\\\\path"];
                    pool.extend_from_slice(HOSTILE);
                    strings(rng, &pool, 1)
                }),
            ),
            (
                HOSTILE_NAME,
                sometimes(rng, |rng| {
                    strings(rng, &["\\", "'", "plain", "x\\'y", "ends\\"], 2)
                }),
            ),
            (
                DOTTED,
                sometimes(rng, |rng| strings(rng, &["x", "y", "X"], 1)),
            ),
            (
                UNICODE,
                sometimes(rng, |rng| strings(rng, &["日本語", "にほん", "Ünïcode"], 2)),
            ),
        ])),
    };
    let metrics = match rng.u8(..20) {
        0 => None,
        1 => Some(Value::Null),
        _ => Some(object(vec![
            ("sessions", sometimes(rng, |rng| json!(rng.u32(..40)))),
            (
                "spend",
                sometimes(rng, |rng| {
                    json!(pick(
                        rng,
                        &[100.0, 99.99, 100.000001, 1000.0, 1000.5, 2500.25, 0.0]
                    ))
                }),
            ),
            (
                "score.v2",
                sometimes(rng, |rng| json!(pick(rng, &[0.1, 0.5, 0.7, 0.49999]))),
            ),
        ])),
    };
    let user = match rng.u8(..20) {
        0 => None,
        1 => Some(Value::Null),
        _ => Some(object(vec![
            // Duplicate user ids: 400 users over the records.
            (
                "UserId",
                sometimes(rng, |rng| json!(format!("user-{}", rng.usize(..400)))),
            ),
            (
                "UserAttributes",
                sometimes(rng, |rng| {
                    object(vec![
                        (
                            "tier",
                            sometimes(rng, |rng| {
                                strings(rng, &["gold", "silver", "platinum", "Gold"], 2)
                            }),
                        ),
                        ("birthday", sometimes(rng, |rng| strings(rng, DATES, 2))),
                    ])
                }),
            ),
        ])),
    };
    let id = match i % 50 {
        17 => None,
        31 => Some(Value::Null),
        // The id the imported file's row without an Id stands for.
        43 if i == 43 => Some(json!(segmentctl::server::endpoint::derived_id(
            "EMAIL",
            "derived@example.com"
        ))),
        _ => Some(json!(format!("ep-{i}"))),
    };
    object(vec![
        ("Id", id),
        (
            "ChannelType",
            sometimes(rng, |rng| {
                json!(pick(rng, &["SMS", "EMAIL", "APNS", "GCM"]))
            }),
        ),
        ("Address", Some(json!(format!("addr-{i}")))),
        ("Demographic", sometimes(rng, |_| demographic)),
        ("Location", sometimes(rng, |_| location)),
        ("Attributes", attributes),
        ("Metrics", metrics),
        ("User", user),
        (
            "EffectiveDate",
            sometimes(rng, |rng| json!(pick(rng, EFFECTIVE))),
        ),
        ("OptOut", Some(json!("NONE"))),
    ])
}

pub fn write_records(path: &Path, n: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&record(&mut rng, i).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// What the evaluator says: the number of records, each segment's count, and the member
/// ids of `members_of`.
pub struct Native {
    pub records: u64,
    pub counts: BTreeMap<String, u64>,
    pub members: BTreeMap<String, Vec<String>>,
}

pub fn native(dir: &Path, members_of: &[&str]) -> Native {
    use segmentctl::cli::commands::{compile_segments, load, Unreadable};
    use segmentctl::reconcile::pipeline::{Inputs, Overrides};
    let ws = load(&Inputs {
        dir: dir.join("manifests"),
        config: None,
        overrides: Overrides::default(),
    })
    .expect("the manifests load");
    let as_of = segmentctl::model::validate::parse_instant(AS_OF).unwrap();
    let compiled = compile_segments(&ws, as_of, &[], Unreadable::Refuse).expect("compile");
    let program = &compiled.program;
    let mut counts = vec![0u64; compiled.segments.len()];
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut records = 0;
    let file = std::fs::File::open(dir.join("endpoints.jsonl")).unwrap();
    for line in BufReader::new(file).lines() {
        let line = line.unwrap();
        let mut record = program.record();
        program
            .read(&line, &mut record)
            .unwrap_or_else(|e| panic!("every generated record is one: {e}: {line}"));
        records += 1;
        program.run(&record, &mut out);
        let id: Value = serde_json::from_str::<Value>(&line).unwrap()["Id"].clone();
        for (i, s) in compiled.segments.iter().enumerate() {
            if out[s.node] {
                counts[i] += 1;
                if members_of.contains(&s.name.as_str()) {
                    if let Some(id) = id.as_str() {
                        members
                            .entry(s.name.clone())
                            .or_default()
                            .push(id.to_string());
                    }
                }
            }
        }
    }
    for m in members.values_mut() {
        m.sort();
    }
    Native {
        records,
        counts: compiled
            .segments
            .iter()
            .zip(counts)
            .map(|(s, n)| (s.name.clone(), n))
            .collect(),
        members,
    }
}

/// `segmentctl sql` for the corpus in `dir`.
pub fn sql(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("sql")
        .arg(dir.join("manifests"))
        .args(["--as-of", AS_OF])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "segmentctl sql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
