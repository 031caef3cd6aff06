//! `segmentctl sql` against the engines themselves: the SQL it writes, run by PySpark (local
//! mode, one Spark session for the binary), DuckDB and PostgreSQL 15 (started here), must
//! give the evaluator's count for every segment of the corpus, and the same member ids.
//! A property test checks random segments over random records against DuckDB, in one run.
//!
//! A test binary of its own: CI's second pass (the integration suite on PostgreSQL) does not
//! repeat it.

#[path = "../it/pg.rs"]
mod pg;
#[path = "../it/python.rs"]
mod python;

mod convert;
mod corpus;
mod profiles;
mod property;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use corpus::{Native, MEMBERS_OF};

const DUCKDB: &str = "duckdb==2.0.1";
const PYSPARK: &str = "pyspark==4.3.0";
const RECORDS: usize = 6000;
const SEED: u64 = 20_261_128;

/// One engine's answer: per query name, its columns and rows.
type Answers = BTreeMap<String, (Vec<String>, Vec<Vec<Value>>)>;

fn script(name: &str) -> String {
    format!("{}/tests/engines/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a runner script with a JSON job file; its standard output is the answers.
fn run_python(python: &Path, script_name: &str, job: &Value, dir: &Path) -> Answers {
    let job_file = dir.join(format!("{script_name}.job.json"));
    std::fs::write(&job_file, job.to_string()).unwrap();
    let out = Command::new(python)
        .arg(script(script_name))
        .arg(&job_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script_name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script_name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v.as_object()
        .unwrap()
        .iter()
        .map(|(name, a)| {
            let columns = a["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let rows = a["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().clone())
                .collect();
            (name.clone(), (columns, rows))
        })
        .collect()
}

/// The corpus, the evaluator's answers, and the queries of one dialect: `counts`, then
/// `members:NAME` for each segment of [`MEMBERS_OF`].
struct Case {
    dir: tempfile::TempDir,
    native: Native,
    queries: BTreeMap<String, String>,
}

fn case(dialect: &str, extra: &[&str]) -> Case {
    let dir = tempfile::tempdir().unwrap();
    corpus::write(dir.path(), RECORDS, SEED);
    let native = corpus::native(dir.path(), MEMBERS_OF);
    let files = dir.path().join("endpoints.jsonl").display().to_string();
    let mut args = vec!["--dialect", dialect];
    if dialect == "duckdb" {
        args.extend_from_slice(&["--files", &files]);
    }
    args.extend_from_slice(extra);
    let mut queries = BTreeMap::new();
    queries.insert("counts".to_string(), corpus::sql(dir.path(), &args));
    for name in MEMBERS_OF {
        let mut a = args.clone();
        a.extend_from_slice(&["--segment", name, "--members"]);
        queries.insert(format!("members:{name}"), corpus::sql(dir.path(), &a));
    }
    Case {
        dir,
        native,
        queries,
    }
}

/// Every count and every member list of `answers` equals the evaluator's.
fn assert_equal(engine: &str, native: &Native, answers: &Answers) {
    let (columns, rows) = &answers["counts"];
    assert_eq!(rows.len(), 1, "{engine}: one row of counts");
    let got: BTreeMap<&str, u64> = columns
        .iter()
        .zip(&rows[0])
        .map(|(c, v)| (c.as_str(), as_u64(v)))
        .collect();
    assert_eq!(got["records"], native.records, "{engine}: records");
    assert_eq!(native.counts.len(), corpus::segments().len() + 1);
    let mut mismatched = Vec::new();
    for (name, n) in &native.counts {
        match got.get(name.as_str()) {
            Some(g) if g == n => {}
            g => mismatched.push(format!("{name}: evaluator {n}, {engine} {g:?}")),
        }
    }
    assert!(
        mismatched.is_empty(),
        "{engine} disagrees:\n{}",
        mismatched.join("\n")
    );
    for name in MEMBERS_OF {
        let (_, rows) = &answers[&format!("members:{name}")];
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        let want = native.members.get(*name).cloned().unwrap_or_default();
        assert!(!want.is_empty(), "{name} has members in the corpus");
        assert_eq!(ids, want, "{engine}: members of {name}");
    }
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("a count, not {v}"))
}

/// The corpus's segments select different audiences (the comparison means something).
fn assert_discriminating(native: &Native) {
    let distinct: std::collections::BTreeSet<u64> = native.counts.values().copied().collect();
    assert!(
        distinct.len() >= 25,
        "the segments select different audiences: {:?}",
        native.counts
    );
    for (name, n) in &native.counts {
        let expect_empty = name == "phones";
        let expect_all = name == "not-tablets" || name == "everyone";
        assert_eq!(*n == 0, expect_empty, "{name}: {n}");
        assert_eq!(*n == native.records, expect_all, "{name}: {n}");
    }
}

#[test]
fn duckdb_counts_and_lists_what_the_evaluator_does() {
    let python = python::python_with("duckdb-venv", &[DUCKDB], "duckdb");
    let c = case("duckdb", &[]);
    assert_discriminating(&c.native);
    let answers = run_python(&python, "run_duckdb.py", &json!(c.queries), c.dir.path());
    assert_equal("DuckDB", &c.native, &answers);
}

/// Loads the corpus into a fresh PostgreSQL database and runs its queries there in one
/// session, after `setup`: by the extended protocol (one statement each), or as psql
/// sends a script (the simple protocol, where `;` may start another statement).
fn postgres_answers(c: &Case, setup: &'static str, as_script: bool) -> (Answers, i64) {
    let schema = corpus::sql(c.dir.path(), &["--dialect", "postgres", "--schema"]);
    let records = std::fs::read(c.dir.path().join("endpoints.jsonl")).unwrap();
    postgres_session(
        &schema,
        "endpoints",
        records,
        setup,
        as_script,
        c.queries.clone(),
    )
}

/// Runs `queries` by the extended protocol over `records` loaded into `table` (made by the
/// `--schema` DDL) of a fresh PostgreSQL database.
fn postgres_run(
    schema: &str,
    table: &'static str,
    records: &[u8],
    queries: &BTreeMap<String, String>,
) -> Answers {
    let (answers, left) = postgres_session(
        schema,
        table,
        records.to_vec(),
        "SELECT 1",
        false,
        queries.clone(),
    );
    assert!(
        left > 0,
        "the {table} table is still there, with its records"
    );
    answers
}

/// One session: the DDL, the records loaded as the README says, `setup`, the queries;
/// the answers and the rows left in `table` afterwards.
fn postgres_session(
    schema: &str,
    table: &'static str,
    records: Vec<u8>,
    setup: &'static str,
    as_script: bool,
    queries: BTreeMap<String, String>,
) -> (Answers, i64) {
    let dsn = pg::database();
    let schema = schema.to_string();
    pg::off_runtime(move || {
        let mut db = postgres::Client::connect(&dsn, postgres::NoTls).expect("connect");
        db.batch_execute(&schema).expect("the --schema DDL runs");
        // Loaded as the README says: no COPY escapes, one record per line.
        let mut w = db
            .copy_in(&format!("COPY {table} (record) FROM STDIN WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"))
            .unwrap();
        std::io::Write::write_all(&mut w, &records).unwrap();
        w.finish().unwrap();
        db.batch_execute(setup).expect("the session's setup");
        let mut answers = Answers::new();
        for (name, sql) in &queries {
            let answer = if as_script {
                simple_rows(&mut db, sql).unwrap_or_else(|e| {
                    let why = e
                        .as_db_error()
                        .map_or(e.to_string(), |d| d.message().into());
                    panic!("{name}: {why}")
                })
            } else {
                let rows = db.query(sql.as_str(), &[]).unwrap_or_else(|e| {
                    let why = e
                        .as_db_error()
                        .map_or(e.to_string(), |d| d.message().into());
                    panic!("{name}: {why}")
                });
                let columns: Vec<String> = rows
                    .first()
                    .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
                    .unwrap_or_default();
                let rows = rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match r.try_get::<_, i64>(i) {
                                Ok(n) => json!(n),
                                Err(_) => json!(r.get::<_, String>(i)),
                            })
                            .collect()
                    })
                    .collect();
                (columns, rows)
            };
            answers.insert(name.clone(), answer);
        }
        // What is left of the records after the queries ran (an error if the table went).
        let left: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .expect("the table is still there")
            .get(0);
        (answers, left)
    })
}

/// A script's rows as psql would get them: text, by the simple protocol; the last
/// statement's rows (the script is one query).
fn simple_rows(
    db: &mut postgres::Client,
    sql: &str,
) -> Result<(Vec<String>, Vec<Vec<Value>>), postgres::Error> {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in db.simple_query(sql)? {
        match m {
            postgres::SimpleQueryMessage::RowDescription(cols) => {
                columns = cols.iter().map(|c| c.name().to_string()).collect();
                rows.clear();
            }
            postgres::SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| json!(r.get(i))).collect());
            }
            _ => {}
        }
    }
    Ok((columns, rows))
}

#[test]
fn postgres_counts_and_lists_what_the_evaluator_does() {
    let c = case("postgres", &[]);
    let (answers, left) = postgres_answers(&c, "SELECT 1", false);
    assert_equal("PostgreSQL", &c.native, &answers);
    assert_eq!(left as u64, c.native.records);
}

/// Where `standard_conforming_strings` is off (a database, role or session setting), a
/// backslash in `'…'` escapes: a value ending in one would swallow its closing quote, and
/// `'; DROP TABLE endpoints; --` would become SQL. The corpus's hostile literals, run as
/// psql runs a script in such a session, still read as written: every count and member
/// list is the evaluator's, and the endpoints table is still there, whole.
#[test]
fn postgres_literals_read_as_written_with_standard_conforming_strings_off() {
    let c = case("postgres", &[]);
    assert!(
        c.native.counts["hostile-literals"] > 0,
        "the hostile segment has members"
    );
    let (answers, left) = postgres_answers(
        &c,
        "SET standard_conforming_strings = off; SET escape_string_warning = off",
        true,
    );
    assert_equal(
        "PostgreSQL (standard_conforming_strings off)",
        &c.native,
        &answers,
    );
    assert_eq!(left as u64, c.native.records, "no record was touched");
}

#[test]
fn spark_counts_and_lists_what_the_evaluator_does() {
    let python = python::python_with("pyspark-venv", &[PYSPARK], "pyspark");
    let c = case("spark", &[]);
    let schema = corpus::sql(c.dir.path(), &["--dialect", "spark", "--schema"]);
    let job = json!({
        "schema": schema,
        "records": c.dir.path().join("endpoints.jsonl"),
        "queries": c.queries,
    });
    let answers = run_python(&python, "run_spark.py", &job, c.dir.path());
    assert_equal("Spark", &c.native, &answers);
}

/// Runs `segmentctl sql ARGS` on a folder; (exit code, stdout, stderr).
fn sql_cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let dir = dir.display().to_string();
    segmentctl_sql(&[&[dir.as_str()], args].concat())
}

/// Runs `segmentctl sql ARGS`; (exit code, stdout, stderr).
fn segmentctl_sql(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segmentctl"))
        .arg("sql")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a reviewer reads: the SQL of two segments (a dimension with a quoted name and a
/// group on it) in each dialect, and the errors of the command's misuses.
#[test]
fn the_sql_and_the_errors_read_as_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        corpus::segment_doc(
            "premium",
            "Dimensions: {Attributes: {\"it's\": {Values: [\"O'Brien\", 'C:\\path']}}, Location: {Country: {Values: [US]}}}",
        ),
        corpus::segment_doc(
            "premium-heavy",
            "SegmentGroups: {Groups: [{SourceSegments: [{Ref: premium}], Dimensions: [{Metrics: {sessions: {ComparisonOperator: GREATER_THAN, Value: 20}}}]}]}",
        ),
    ];
    std::fs::write(dir.path().join("s.yaml"), docs.join("---\n")).unwrap();
    let as_of = ["--as-of", corpus::AS_OF];
    for dialect in ["spark", "duckdb", "postgres"] {
        let (code, sql, err) = sql_cli(dir.path(), &[&as_of[..], &["--dialect", dialect]].concat());
        assert_eq!(code, 0, "{err}");
        insta::assert_snapshot!(format!("sql_{dialect}"), sql);
        let (code, schema, _) = sql_cli(dir.path(), &["--dialect", dialect, "--schema"]);
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("schema_{dialect}"), schema);
    }
    // DuckDB over a table: --schema loads --files into it, and the query reads the table.
    let (_, schema, _) = sql_cli(
        dir.path(),
        &[
            "--dialect",
            "duckdb",
            "--table",
            "records",
            "--files",
            "export/*.gz",
            "--schema",
        ],
    );
    assert!(
        schema.starts_with("CREATE TABLE records AS SELECT * FROM read_json('export/*.gz', "),
        "{schema}"
    );
    let (_, sql, _) = sql_cli(
        dir.path(),
        &[&as_of[..], &["--dialect", "duckdb", "--table", "records"]].concat(),
    );
    assert!(
        sql.contains("\n  FROM records\n") && !sql.contains("read_json"),
        "{sql}"
    );
    let (_, members, _) = sql_cli(
        dir.path(),
        &[
            &as_of[..],
            &[
                "--dialect",
                "duckdb",
                "--segment",
                "premium-heavy",
                "--members",
            ],
        ]
        .concat(),
    );
    assert!(
        members.contains("WHERE n_1 AND s_id IS NOT NULL\nORDER BY s_id;"),
        "{members}"
    );
    let mut errors = String::new();
    for args in [
        &["--dialect", "duckdb", "--members"][..],
        &["--dialect", "duckdb", "--segment", "nope"],
        &[
            "--dialect",
            "postgres",
            "--table",
            "endpoints; DROP TABLE x",
        ],
        &["--dialect", "spark", "--as-of", "yesterday"],
        &["--dialect", "sqlite"],
    ] {
        let (code, out, err) = sql_cli(dir.path(), args);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?} printed SQL: {out}");
        errors.push_str(&format!("$ segmentctl sql DIR {}\n{err}\n", args.join(" ")));
    }
    insta::assert_snapshot!(
        "sql_errors",
        errors.replace(&dir.path().display().to_string(), "DIR")
    );
}
