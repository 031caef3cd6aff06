//! Customer Profiles segment definitions in SQL: random definitions of every dimension
//! family (string fields, BirthDate, addresses, custom attributes read as text, dates,
//! numbers and lists, ProfileType, calculated attributes; groups over earlier definitions)
//! over profiles generated to hit the grammars' edges (missing and empty values, dates and
//! instants valid or not, numbers and near-numbers, lists in every spelling and broken
//! ones, quotes, backslashes, unicode). The evaluator's count equals DuckDB's (a random
//! seed each run, `SEGMENTCTL_PROPERTY_SEED` replays one), PostgreSQL's and Spark's, and
//! the members of the largest definitions are the same.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::Answers;

const PROFILES: usize = 3000;

/// Names of attributes; one needs quoting in every dialect.
const QUOTED: &str = "it's \"q\"\\";

const NAMES: &[&str] = &[
    "Ada",
    "ada",
    "Grace",
    "O'Brien",
    "say \"hi\"",
    "C:\\path",
    "ends\\",
    "日本語",
    "Love",
    "",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Hop",
    "per",
    "Love",
    "LOVELACE",
    "",
    "Ünïcødé",
];
const CITIES: &[&str] = &["London", "Lon", "Paris", "london", "São Paulo", ""];
/// Dates and instants as profiles hold them: valid (both forms, offsets, a fraction,
/// lower-case separators), and not (a day that does not exist, a short month, a signed
/// year, words).
const DATES: &[&str] = &[
    "1815-12-10",
    "1906-12-09",
    "2000-02-29",
    "2026-11-30",
    "2026-11-30T10:00:00Z",
    "2026-11-30T23:30:00-02:00",
    "2026-12-01t00:00:00.5z",
    "1999-12-31T23:59:59+01:00",
    "2000-01-01X12:00:00Z",
    "2016-12-31T23:59:60Z",
    "2000-01-01 12:00:00Z",
    "1990-02-30",
    "1990-5-17",
    "+990-01-01",
    "2026-11-30 ",
    "yesterday",
    "",
];
/// Dates a criterion may name (the model's rules accept only these).
const BOUNDS: &[&str] = &[
    "1815-12-10",
    "1900-01-01",
    "2000-02-29",
    "2026-11-30",
    "2026-11-30T12:00:00Z",
    "2026-12-01T00:00:00+05:00",
];
const NUMBERS: &[&str] = &[
    "120.50",
    "100",
    "-3",
    "007",
    "1e3",
    "+5",
    " 5",
    "abc",
    "12.",
    ".5",
    "-0",
    "0.1",
    "7",
    "99.999999999999999999",
    "٣",
    "",
];
const BOUND_NUMBERS: &[&str] = &["100", "0", "-1", "120.5", "7", "0.1", "99.99"];
/// List values: JSON arrays of strings in several spellings, escapes that decode to
/// `gold`, and what is no list (a trailing comma, numbers, NUL and surrogate escapes,
/// garbage after the end, a JSON string).
const LISTS: &[&str] = &[
    r#"["gold","vip"]"#,
    "[ \"gold\" ,\t\"vip\" ]\n",
    r#"["gold"]"#,
    "gold",
    "vip",
    "[]",
    r#"["go\u006cd"]"#,
    r#"["a\ud800","gold"]"#,
    r#"["gold",]"#,
    "[1,2]",
    r#"["x\"y","gold"]"#,
    r#"["\u0000gold"]"#,
    r#"["gold"] x"#,
    r#""gold""#,
    r#"["GOLD","silver","vip"]"#,
    r#"["\\","'"]"#,
    "",
];
const PLANS: &[&str] = &[
    "pro",
    "free",
    "Pro",
    "pro-trial",
    "'; DROP TABLE profiles; --",
    "",
];

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

/// Sometimes absent, sometimes null, else a value of `pool`.
fn maybe(rng: &mut fastrand::Rng, o: &mut Map<String, Value>, key: &str, pool: &[&str]) {
    match rng.u8(..10) {
        0 => {}
        1 => {
            o.insert(key.into(), Value::Null);
        }
        _ => {
            o.insert(key.into(), json!(pick(rng, pool)));
        }
    }
}

fn profile(rng: &mut fastrand::Rng, i: usize) -> Value {
    let mut p = Map::new();
    p.insert("ProfileId".into(), json!(format!("{i:032x}")));
    maybe(rng, &mut p, "FirstName", NAMES);
    maybe(rng, &mut p, "LastName", LAST);
    maybe(
        rng,
        &mut p,
        "EmailAddress",
        &["a@x.com", "A@X.COM", "b@y.org"],
    );
    maybe(rng, &mut p, "BirthDate", DATES);
    maybe(rng, &mut p, "ProfileType", &["PROFILE", "ACCOUNT_PROFILE"]);
    for address in ["Address", "ShippingAddress"] {
        let mut a = Map::new();
        maybe(rng, &mut a, "City", CITIES);
        maybe(rng, &mut a, "Country", &["GB", "FR", "BR"]);
        if rng.bool() {
            p.insert(address.into(), Value::Object(a));
        }
    }
    let mut attributes = Map::new();
    maybe(rng, &mut attributes, "tier", LISTS);
    maybe(rng, &mut attributes, "spend", NUMBERS);
    maybe(rng, &mut attributes, "seen", DATES);
    maybe(rng, &mut attributes, "plan", PLANS);
    maybe(rng, &mut attributes, QUOTED, NAMES);
    if rng.u8(..20) == 0 {
        attributes.insert("spend".into(), json!(format!("1{}", "0".repeat(300))));
    }
    if rng.u8(..10) > 0 {
        p.insert("Attributes".into(), Value::Object(attributes));
    }
    Value::Object(p)
}

fn some(rng: &mut fastrand::Rng, pool: &[&str]) -> Value {
    let values: Vec<&str> = (0..rng.usize(1..=3))
        .map(|_| pick(rng, pool))
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        json!([pool[0]])
    } else {
        json!(values)
    }
}

fn string_criterion(rng: &mut fastrand::Rng, pool: &[&str]) -> Value {
    let kind = pick(
        rng,
        &[
            "INCLUSIVE",
            "EXCLUSIVE",
            "CONTAINS",
            "BEGINS_WITH",
            "ENDS_WITH",
        ],
    );
    let mut values: Vec<&str> = pool.to_vec();
    values.extend(["Lo", "per", "a", "'", "\\", "本", "on"]);
    json!({"DimensionType": kind, "Values": some(rng, &values)})
}

/// A date criterion; a range's bounds in order (`BOUNDS` is sorted).
fn date_criterion(rng: &mut fastrand::Rng) -> Value {
    let kinds: &[&str] = &["BEFORE", "AFTER", "ON", "BETWEEN", "NOT_BETWEEN"];
    let kind = pick(rng, kinds);
    let values = match kind {
        "BETWEEN" | "NOT_BETWEEN" => {
            let (a, b) = (rng.usize(..BOUNDS.len()), rng.usize(..BOUNDS.len()));
            json!([BOUNDS[a.min(b)], BOUNDS[a.max(b)]])
        }
        _ => json!([pick(rng, BOUNDS)]),
    };
    json!({"DimensionType": kind, "Values": values})
}

fn attribute_criterion(rng: &mut fastrand::Rng) -> (String, Value) {
    match rng.u8(..5) {
        0 => {
            let kind = pick(
                rng,
                &[
                    "LIST_CONTAINS",
                    "LIST_CONTAINS_ALL",
                    "INCLUSIVE",
                    "EXCLUSIVE",
                    "CONTAINS",
                ],
            );
            let pool = [
                "gold",
                "vip",
                "silver",
                "GOLD",
                "x\"y",
                "\\",
                "'",
                "[\"gold\",\"vip\"]",
            ];
            (
                "tier".into(),
                json!({"DimensionType": kind, "Values": some(rng, &pool)}),
            )
        }
        1 => {
            let kind = pick(
                rng,
                &[
                    "GREATER_THAN",
                    "LESS_THAN",
                    "GREATER_THAN_OR_EQUAL",
                    "LESS_THAN_OR_EQUAL",
                    "EQUAL",
                ],
            );
            (
                "spend".into(),
                json!({"DimensionType": kind, "Values": some(rng, BOUND_NUMBERS)}),
            )
        }
        2 => ("seen".into(), date_criterion(rng)),
        3 => ("plan".into(), string_criterion(rng, PLANS)),
        _ => (QUOTED.into(), string_criterion(rng, NAMES)),
    }
}

/// One `Dimension`: one to three criteria of ProfileAttributes, or a calculated attribute.
fn dimension(rng: &mut fastrand::Rng) -> Value {
    if rng.u8(..12) == 0 {
        let kind = pick(
            rng,
            &["GREATER_THAN", "EXCLUSIVE", "NOT_BETWEEN", "INCLUSIVE"],
        );
        let values = if kind == "NOT_BETWEEN" {
            json!(["2026-01-01", "2026-02-01"])
        } else {
            json!(["1"])
        };
        return json!({"CalculatedAttributes": {"_orders": {"DimensionType": kind, "Values": values}}});
    }
    let mut p = Map::new();
    for _ in 0..rng.usize(1..=3) {
        match rng.u8(..7) {
            0 => {
                p.insert("FirstName".into(), string_criterion(rng, NAMES));
            }
            1 => {
                p.insert("LastName".into(), string_criterion(rng, LAST));
            }
            2 => {
                p.insert("BirthDate".into(), date_criterion(rng));
            }
            3 => {
                let address = pick(rng, &["Address", "ShippingAddress"]);
                p.insert(
                    address.into(),
                    json!({"City": string_criterion(rng, CITIES)}),
                );
            }
            4 => {
                let kind = pick(rng, &["INCLUSIVE", "EXCLUSIVE"]);
                let values = [pick(rng, &["PROFILE", "ACCOUNT_PROFILE"])];
                p.insert(
                    "ProfileType".into(),
                    json!({"DimensionType": kind, "Values": values}),
                );
            }
            _ => {
                let (key, criterion) = attribute_criterion(rng);
                let attributes = p.entry("Attributes").or_insert_with(|| json!({}));
                attributes[key] = criterion;
            }
        }
    }
    json!({ "ProfileAttributes": p })
}

fn include(rng: &mut fastrand::Rng) -> &'static str {
    pick(rng, &["ALL", "ANY", "NONE"])
}

/// Definition `d{i}`: dimensions, or groups over earlier definitions; `Type`, `SourceType`
/// and `Include` sometimes left to their defaults.
fn definition(rng: &mut fastrand::Rng, i: usize) -> Value {
    let groups: Vec<Value> = (0..rng.usize(1..=3))
        .map(|_| {
            let mut g = Map::new();
            let sources: Vec<Value> = if i > 0 && rng.u8(..10) < 4 {
                (0..rng.usize(1..=2))
                    .map(|_| json!({"SegmentDefinitionName": format!("d{}", rng.usize(..i))}))
                    .collect()
            } else {
                Vec::new()
            };
            let dims: Vec<Value> = (0..rng.usize(usize::from(sources.is_empty())..=2))
                .map(|_| dimension(rng))
                .collect();
            if !sources.is_empty() {
                g.insert("SourceSegments".into(), json!(sources));
                if rng.bool() {
                    g.insert("SourceType".into(), json!(include(rng)));
                }
            }
            if !dims.is_empty() {
                g.insert("Dimensions".into(), json!(dims));
                if rng.bool() {
                    g.insert("Type".into(), json!(include(rng)));
                }
            }
            Value::Object(g)
        })
        .collect();
    let mut groups_of = json!({ "Groups": groups });
    if rng.bool() {
        groups_of["Include"] = json!(include(rng));
    }
    json!({
        "SegmentDefinitionName": format!("d{i}"),
        "DisplayName": format!("Definition {i}"),
        "SegmentGroups": groups_of,
    })
}

/// Writes `definitions.json` (`n` definitions) and `profiles.jsonl` into `dir`.
fn write(dir: &Path, n: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let definitions: Vec<Value> = (0..n).map(|i| definition(&mut rng, i)).collect();
    std::fs::write(
        dir.join("definitions.json"),
        serde_json::to_string_pretty(&definitions).unwrap(),
    )
    .unwrap();
    let mut lines = String::new();
    for i in 0..PROFILES {
        lines.push_str(&profile(&mut rng, i).to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("profiles.jsonl"), lines).unwrap();
}

/// The evaluator's answer: profiles, each definition's count, each one's members.
struct Native {
    records: u64,
    counts: BTreeMap<String, u64>,
    members: BTreeMap<String, Vec<String>>,
}

fn native(dir: &Path) -> Native {
    use segmentctl::audience::evaluate::profiles::DefinitionCatalog;
    use segmentctl::audience::evaluate::Program;
    use segmentctl::model::profiles::DefinitionDocument;
    let bytes = std::fs::read(dir.join("definitions.json")).unwrap();
    let documents = DefinitionDocument::read_all(&bytes).expect("the definitions read");
    for d in &documents {
        assert!(d.violations().is_empty(), "{:?}", d.violations());
    }
    let catalog = DefinitionCatalog {
        definitions: documents
            .iter()
            .map(|d| {
                (
                    d.segment_definition_name.clone(),
                    d.segment_groups.as_ref().unwrap(),
                )
            })
            .collect(),
    };
    let as_of = segmentctl::model::validate::parse_instant(crate::corpus::AS_OF).unwrap();
    let mut program = Program::for_profiles(as_of);
    let nodes: Vec<(String, usize)> = catalog
        .definitions
        .keys()
        .map(|n| (n.clone(), program.add_definition(0, &catalog, n)))
        .collect();
    let mut native = Native {
        records: 0,
        counts: nodes.iter().map(|(n, _)| (n.clone(), 0)).collect(),
        members: BTreeMap::new(),
    };
    let mut out = Vec::new();
    let file = std::fs::File::open(dir.join("profiles.jsonl")).unwrap();
    for line in BufReader::new(file).lines() {
        let line = line.unwrap();
        let mut record = program.record();
        program
            .read(&line, &mut record)
            .unwrap_or_else(|e| panic!("every generated profile is one: {e}: {line}"));
        native.records += 1;
        program.run(&record, &mut out);
        let id = serde_json::from_str::<Value>(&line).unwrap()["ProfileId"]
            .as_str()
            .unwrap()
            .to_string();
        for (name, node) in &nodes {
            if out[*node] {
                *native.counts.get_mut(name).unwrap() += 1;
                native
                    .members
                    .entry(name.clone())
                    .or_default()
                    .push(id.clone());
            }
        }
    }
    for ids in native.members.values_mut() {
        ids.sort();
    }
    native
}

/// `segmentctl sql --customer-profiles DIR/definitions.json ARGS`.
fn sql(dir: &Path, args: &[&str]) -> String {
    let defs = dir.join("definitions.json").display().to_string();
    let base = [
        "--customer-profiles",
        &defs,
        "--as-of",
        crate::corpus::AS_OF,
    ];
    let (code, out, err) = crate::segmentctl_sql(&[&base[..], args].concat());
    assert_eq!(code, 0, "segmentctl sql {args:?}: {err}");
    out
}

/// The queries for one dialect: `counts`, then `members:NAME` for the two largest
/// definitions that are not everyone.
fn queries(dir: &Path, native: &Native, args: &[&str]) -> BTreeMap<String, String> {
    let mut queries = BTreeMap::new();
    queries.insert("counts".to_string(), sql(dir, args));
    for name in members_of(native) {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--segment", &name, "--members"]);
        queries.insert(format!("members:{name}"), sql(dir, &a));
    }
    queries
}

fn members_of(native: &Native) -> Vec<String> {
    let mut by_size: Vec<(&u64, &String)> = native
        .counts
        .iter()
        .filter(|(_, n)| **n > 0 && **n < native.records)
        .map(|(name, n)| (n, name))
        .collect();
    by_size.sort_by(|a, b| b.cmp(a));
    by_size.iter().take(2).map(|(_, n)| n.to_string()).collect()
}

/// Every count and member list of `answers` is the evaluator's.
fn assert_same(engine: &str, seed: u64, native: &Native, answers: &Answers) {
    let (columns, rows) = &answers["counts"];
    assert_eq!(columns.len(), native.counts.len() + 1, "{engine}: columns");
    let mut wrong = Vec::new();
    for (c, v) in columns.iter().zip(&rows[0]) {
        let want = if c == "records" {
            native.records
        } else {
            native.counts[c]
        };
        if crate::as_u64(v) != want {
            wrong.push(format!("{c}: evaluator {want}, {engine} {v}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "seed {seed} (replay: SEGMENTCTL_PROPERTY_SEED={seed}): {} of {} definitions differ:\n{}",
        wrong.len(),
        native.counts.len(),
        wrong.join("\n")
    );
    let members = members_of(native);
    assert_eq!(members.len(), 2, "two definitions have some members");
    for name in members {
        let (_, rows) = &answers[&format!("members:{name}")];
        let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        assert_eq!(ids, native.members[&name], "{engine}: members of {name}");
    }
    let distinct: std::collections::BTreeSet<u64> = native.counts.values().copied().collect();
    assert!(
        distinct.len() > native.counts.len() / 4,
        "the random definitions select different audiences: {distinct:?}"
    );
}

fn seed() -> u64 {
    std::env::var("SEGMENTCTL_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

#[test]
fn random_definitions_count_the_same_natively_and_in_duckdb() {
    let seed = seed();
    let python = crate::python::python_with("duckdb-venv", &[crate::DUCKDB], "duckdb");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 160, seed);
    let native = native(dir.path());
    let files = dir.path().join("profiles.jsonl").display().to_string();
    let q = queries(
        dir.path(),
        &native,
        &["--dialect", "duckdb", "--files", &files],
    );
    let answers = crate::run_python(&python, "run_duckdb.py", &json!(q), dir.path());
    assert_same("DuckDB", seed, &native, &answers);
}

#[test]
fn random_definitions_count_the_same_natively_and_in_postgres() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 80, seed);
    let native = native(dir.path());
    let q = queries(dir.path(), &native, &["--dialect", "postgres"]);
    let schema = sql(dir.path(), &["--dialect", "postgres", "--schema"]);
    let records = std::fs::read(dir.path().join("profiles.jsonl")).unwrap();
    let answers = crate::postgres_run(&schema, "profiles", &records, &q);
    assert_same("PostgreSQL", seed, &native, &answers);
}

#[test]
fn random_definitions_count_the_same_natively_and_in_spark() {
    let seed = seed();
    let python = crate::python::python_with("pyspark-venv", &[crate::PYSPARK], "pyspark");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 40, seed);
    let native = native(dir.path());
    let q = queries(dir.path(), &native, &["--dialect", "spark"]);
    let schema = sql(dir.path(), &["--dialect", "spark", "--schema"]);
    let job = json!({
        "schema": schema,
        "records": dir.path().join("profiles.jsonl"),
        "view": "profiles",
        "queries": q,
    });
    let answers = crate::run_python(&python, "run_spark.py", &job, dir.path());
    assert_same("Spark", seed, &native, &answers);
}

/// What a reviewer reads: two definitions (a list and a number criterion on attributes,
/// one with a quoted name; a source, a birth date and an address) in each dialect, the
/// profile schema, and the errors of broken definition files.
#[test]
fn the_profile_sql_and_its_errors_read_as_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("defs.json");
    std::fs::write(
        &defs,
        r#"[
  {"SegmentDefinitionName": "gold-spenders", "DisplayName": "Gold spenders",
   "SegmentGroups": {"Groups": [{"Dimensions": [{"ProfileAttributes": {"Attributes": {
     "tier": {"DimensionType": "LIST_CONTAINS", "Values": ["gold"]},
     "it's": {"DimensionType": "GREATER_THAN", "Values": ["100"]}}}}]}]}},
  {"SegmentDefinitionName": "gold-londoners-born-before-1950",
   "SegmentGroups": {"Include": "ALL", "Groups": [{
     "SourceSegments": [{"SegmentDefinitionName": "gold-spenders"}],
     "Dimensions": [{"ProfileAttributes": {
       "BirthDate": {"DimensionType": "BEFORE", "Values": ["1950-01-01"]},
       "Address": {"City": {"DimensionType": "BEGINS_WITH", "Values": ["Lon"]}}}}]}]}}
]"#,
    )
    .unwrap();
    let defs = defs.display().to_string();
    let as_of = ["--as-of", crate::corpus::AS_OF];
    for dialect in ["spark", "duckdb", "postgres"] {
        let base = ["--customer-profiles", &defs, "--dialect", dialect];
        let (code, sql, err) = crate::segmentctl_sql(&[&base[..], &as_of[..]].concat());
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(format!("profiles_sql_{dialect}"), sql);
        let (code, schema, err) = crate::segmentctl_sql(&[&base[..], &["--schema"]].concat());
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(format!("profiles_schema_{dialect}"), schema);
    }
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let not_json = write(
        "not-json.json",
        "{\"SegmentDefinitionName\": \"x\",\n  \"SegmentGroups\": [}\n",
    );
    let broken = write(
        "broken.json",
        r#"{"SegmentDefinitionName": "bad name", "SegmentGroups": {"Groups": [{"Dimensions": [{"ProfileAttributes": {"FirstName": {"DimensionType": "INCLUSIVE", "Values": []}}}]}]}}"#,
    );
    let unknown_field = write(
        "unknown-field.json",
        r#"{"SegmentDefinitionName": "x", "SegmentGroups": {"Groups": [{"Dimension": []}]}}"#,
    );
    let orphan = write(
        "orphan.json",
        r#"{"SegmentDefinitionName": "orphan", "SegmentGroups": {"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "missing-base"}]}]}}"#,
    );
    let twice = write(
        "twice.json",
        r#"{"SegmentDefinitionName": "gold-spenders"}"#,
    );
    let in_sql = write(
        "sql.json",
        r#"{"SegmentDefinitionName": "by-sql", "SegmentSqlQuery": "SELECT 1"}"#,
    );
    let manifest = write(
        "manifest.yaml",
        "apiVersion: segmentctl/v1\nkind: SegmentDefinition\nmetadata: {name: m}\nspec:\n  SegmentGroups: {Groups: []}\n",
    );
    let cycle = write(
        "cycle.json",
        r#"[{"SegmentDefinitionName": "a", "SegmentGroups": {"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "b"}], "SourceType": "NONE"}]}},
            {"SegmentDefinitionName": "b", "SegmentGroups": {"Groups": [{"SourceSegments": [{"SegmentDefinitionName": "a"}], "SourceType": "NONE"}]}}]"#,
    );
    let nul = write(
        "nul.json",
        r#"{"SegmentDefinitionName": "n", "SegmentGroups": {"Groups": [{"Dimensions": [{"ProfileAttributes": {"FirstName": {"DimensionType": "INCLUSIVE", "Values": ["a\u0000b"]}}}]}]}}"#,
    );
    let mut errors = String::new();
    for args in [
        &["--customer-profiles", &not_json][..],
        &["--customer-profiles", &broken],
        &["--customer-profiles", &unknown_field],
        &["--customer-profiles", &orphan],
        &["--customer-profiles", &defs, "--customer-profiles", &twice],
        &["--customer-profiles", &in_sql],
        &["--customer-profiles", &defs, "--segment", "gold-spender"],
        &["--customer-profiles", &defs, "--members"],
        &["--customer-profiles", "/nonexistent/defs.json"],
        &["--customer-profiles", &manifest],
        &["--customer-profiles", &cycle],
        &["--customer-profiles", &nul, "--dialect", "postgres"],
    ] {
        let dialect: &[&str] = if args.contains(&"--dialect") {
            &[]
        } else {
            &["--dialect", "duckdb"]
        };
        let (code, out, err) = crate::segmentctl_sql(&[args, dialect].concat());
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?} printed SQL: {out}");
        errors.push_str(&format!(
            "$ segmentctl sql {}\n{err}\n",
            [args, dialect].concat().join(" ")
        ));
    }
    insta::assert_snapshot!(
        "profiles_sql_errors",
        errors.replace(&dir.path().display().to_string(), "DIR")
    );
}
