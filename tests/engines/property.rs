//! Random segments (every dimension family, random groups over earlier random segments)
//! over random records: the evaluator's count equals DuckDB's count of the generated SQL,
//! for every segment. All cases go into one manifest folder, so one SQL query and one
//! DuckDB run check them all. The seed is random and printed; `SEGMENTCTL_PROPERTY_SEED`
//! replays one.

use serde_json::{json, Map, Value};

use crate::corpus;

const SEGMENTS: usize = 160;
const RECORDS: usize = 3000;

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn some_of(rng: &mut fastrand::Rng, items: &[&str]) -> Value {
    let n = rng.usize(1..=3);
    Value::Array((0..n).map(|_| json!(pick(rng, items))).collect())
}

/// Bounds that are instants (criteria with a bound that is not one are refused by
/// `validate`).
const BOUNDS: &[&str] = &[
    "2026-03-01T00:00:00Z",
    "2026-03-01T12:00:00+05:00",
    "2026-06-01T00:00:00Z",
    "2026-06-30T23:59:59Z",
    "2026-09-01T00:00:00.5Z",
    "2024-02-29T00:00:00Z",
    "1970-01-01T00:00:00Z",
];

fn attribute(rng: &mut fastrand::Rng) -> (String, Value) {
    let (name, pool): (&str, &[&str]) = match rng.u8(..6) {
        0 => ("plan", &["free", "premium", "trial", "Premium", "prem"]),
        1 => ("interests", &["music", "usic", "Jazz", "", "sport"]),
        2 => (corpus::QUOTED, &["O'Brien", "say \"hi\"", "plain", "'"]),
        3 => (corpus::BACKSLASH, &["C:\\path", "\\", "C:/path"]),
        4 => (corpus::UNICODE, &["日本", "にほん", "Ünïcode"]),
        _ => ("signup", BOUNDS),
    };
    let kind = pick(
        rng,
        &[
            "INCLUSIVE",
            "EXCLUSIVE",
            "CONTAINS",
            "BEFORE",
            "AFTER",
            "ON",
            "BETWEEN",
            "NOT_BETWEEN",
        ],
    );
    let values = match kind {
        "BEFORE" | "AFTER" | "ON" => json!([pick(rng, BOUNDS)]),
        "BETWEEN" | "NOT_BETWEEN" => json!([pick(rng, BOUNDS), pick(rng, BOUNDS)]),
        _ => some_of(rng, pool),
    };
    (
        name.to_string(),
        json!({"AttributeType": kind, "Values": values}),
    )
}

fn set(rng: &mut fastrand::Rng, pool: &[&str]) -> Value {
    json!({
        "DimensionType": pick(rng, &["INCLUSIVE", "EXCLUSIVE"]),
        "Values": some_of(rng, pool),
    })
}

/// One `Dimensions` object of one to three criteria, of any family.
fn dimensions(rng: &mut fastrand::Rng) -> Value {
    let mut d = Map::new();
    for _ in 0..rng.usize(1..=3) {
        match rng.u8(..7) {
            0 => {
                let (name, a) = attribute(rng);
                d.entry("Attributes")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap()
                    .insert(name, a);
            }
            1 => {
                let (name, a) = match rng.bool() {
                    true => (
                        "tier",
                        json!({"AttributeType": pick(rng, &["INCLUSIVE", "EXCLUSIVE", "CONTAINS"]),
                               "Values": some_of(rng, &["gold", "platinum", "Gold", "old"])}),
                    ),
                    false => ("birthday", attribute_dated(rng)),
                };
                d.insert("UserAttributes".into(), json!({ name: a }));
            }
            2 => {
                let (name, values): (&str, &[f64]) = match rng.u8(..3) {
                    0 => ("sessions", &[0.0, 5.0, 10.0, 20.0, 39.0]),
                    1 => ("spend", &[100.0, 99.99, 1000.0, 0.0]),
                    _ => ("score.v2", &[0.1, 0.5, 0.49999]),
                };
                let op = pick(
                    rng,
                    &[
                        "GREATER_THAN",
                        "LESS_THAN",
                        "GREATER_THAN_OR_EQUAL",
                        "LESS_THAN_OR_EQUAL",
                        "EQUAL",
                    ],
                );
                let value = values[rng.usize(..values.len())];
                d.insert(
                    "Metrics".into(),
                    json!({ name: {"ComparisonOperator": op, "Value": value} }),
                );
            }
            3 => {
                let field = pick(
                    rng,
                    &[
                        "Platform",
                        "Channel",
                        "AppVersion",
                        "Make",
                        "Model",
                        "DeviceType",
                    ],
                );
                let pool: &[&str] = match field {
                    "Platform" => &["iOS", "Android", "ios"],
                    "Channel" => &["SMS", "EMAIL", "APNS", "GCM"],
                    "AppVersion" => &["1.0", "2.0", "2.1"],
                    "Make" => &["Apple", "Samsung"],
                    "Model" => &["iPhone 8", "Galaxy"],
                    _ => &["PHONE", "TABLET"],
                };
                d.insert("Demographic".into(), json!({ field: set(rng, pool) }));
            }
            4 => {
                d.insert(
                    "Location".into(),
                    json!({"Country": set(rng, &["US", "CA", "MX", "FR", "us"])}),
                );
            }
            5 => {
                let mut g = json!({"Coordinates": {
                    "Latitude": 47.6062 + (rng.f64() - 0.5),
                    "Longitude": -122.3321 + (rng.f64() - 0.5),
                }});
                if rng.bool() {
                    g["RangeInKilometers"] = json!(rng.f64() * 120.0);
                }
                d.insert("Location".into(), json!({ "GPSPoint": g }));
            }
            _ => {
                d.insert(
                    "Behavior".into(),
                    json!({"Recency": {
                        "RecencyType": pick(rng, &["ACTIVE", "INACTIVE"]),
                        "Duration": pick(rng, &["HR_24", "DAY_7", "DAY_14", "DAY_30"]),
                    }}),
                );
            }
        }
    }
    Value::Object(d)
}

fn attribute_dated(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..3) {
        0 => json!({"AttributeType": "ON", "Values": [pick(rng, BOUNDS)]}),
        1 => json!({"AttributeType": "BETWEEN", "Values": [pick(rng, BOUNDS), pick(rng, BOUNDS)]}),
        _ => json!({"AttributeType": "AFTER", "Values": [pick(rng, BOUNDS)]}),
    }
}

fn include(rng: &mut fastrand::Rng) -> &'static str {
    pick(rng, &["ALL", "ANY", "NONE"])
}

/// A segment spec: dimensions, or groups over earlier segments (`p0` … `p{i-1}`).
fn spec(rng: &mut fastrand::Rng, i: usize) -> Value {
    if i == 0 || rng.u8(..10) < 6 {
        return json!({ "Name": format!("p{i}"), "Dimensions": dimensions(rng) });
    }
    let groups: Vec<Value> = (0..rng.usize(1..=3))
        .map(|_| {
            let mut g = Map::new();
            let sources: Vec<Value> = (0..rng.usize(0..=2))
                .map(|_| json!({"Ref": format!("p{}", rng.usize(..i))}))
                .collect();
            let dims: Vec<Value> = (0..rng.usize(usize::from(sources.is_empty())..=2))
                .map(|_| dimensions(rng))
                .collect();
            if !sources.is_empty() {
                g.insert("SourceSegments".into(), json!(sources));
                g.insert("SourceType".into(), json!(include(rng)));
            }
            if !dims.is_empty() {
                g.insert("Dimensions".into(), json!(dims));
                g.insert("Type".into(), json!(include(rng)));
            }
            Value::Object(g)
        })
        .collect();
    json!({
        "Name": format!("p{i}"),
        "SegmentGroups": {"Include": include(rng), "Groups": groups},
    })
}

#[test]
fn random_segments_count_the_same_natively_and_in_duckdb() {
    let seed = std::env::var("SEGMENTCTL_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let python = crate::python::python_with("duckdb-venv", &[crate::DUCKDB], "duckdb");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let docs: Vec<String> = (0..SEGMENTS)
        .map(|i| {
            // JSON is YAML: the spec goes in as it is.
            let spec = spec(&mut rng, i);
            format!(
                "apiVersion: segmentctl/v1\nkind: Segment\nmetadata: {{name: p{i}, application: {}}}\nspec: {spec}\n",
                corpus::APP
            )
        })
        .collect();
    std::fs::write(m.join("random.yaml"), docs.join("---\n")).unwrap();
    corpus::write_records(&dir.path().join("endpoints.jsonl"), RECORDS, seed);

    let native = corpus::native(dir.path(), &[]);
    let files = dir.path().join("endpoints.jsonl").display().to_string();
    let sql = corpus::sql(dir.path(), &["--dialect", "duckdb", "--files", &files]);
    let answers = crate::run_python(
        &python,
        "run_duckdb.py",
        &json!({ "counts": sql }),
        dir.path(),
    );
    let (columns, rows) = &answers["counts"];
    let mut wrong = Vec::new();
    for (c, v) in columns.iter().zip(&rows[0]) {
        let want = if c == "records" {
            native.records
        } else {
            native.counts[c]
        };
        if crate::as_u64(v) != want {
            wrong.push(format!("{c}: evaluator {want}, DuckDB {v}"));
        }
    }
    assert_eq!(columns.len(), SEGMENTS + 1);
    assert!(
        wrong.is_empty(),
        "seed {seed} (replay: SEGMENTCTL_PROPERTY_SEED={seed}): {} of {SEGMENTS} segments differ:\n{}\nmanifests: {}",
        wrong.len(),
        wrong.join("\n"),
        std::fs::read_to_string(m.join("random.yaml")).unwrap_or_default()
    );
    let distinct: std::collections::BTreeSet<u64> = native.counts.values().copied().collect();
    assert!(
        distinct.len() > SEGMENTS / 4,
        "the random segments differ: {distinct:?}"
    );
}
