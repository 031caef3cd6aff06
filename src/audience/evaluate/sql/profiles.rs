//! Customer Profiles profiles in SQL: the slots a profile program reads (a field by its
//! path, an attribute, an attribute read as a list), and the grammars of
//! [`crate::model::profiles`] (lists, dates, numbers) said in each engine's words, so an
//! engine reads a profile exactly as [`super::super::record`] does.
//!
//! Every slot is a list, as an endpoint's attribute is: empty when the value is missing
//! (absent, null or `""`), the value alone, or for a list-valued attribute its elements.
//! The criteria over lists are then the endpoints' own.

use super::{pg_array, Dialect};
use crate::audience::evaluate::Source;
use crate::model::profiles::{AddressDimension, ProfileAttributes, LIST_PATTERN, MAX_NUMBER_LEN};

/// A calendar date, as [`crate::model::profiles::parse_date_or_instant`] reads one.
const DATE_PATTERN: &str = "[0-9]{4}-[0-9]{2}-[0-9]{2}";
/// A number, as [`crate::model::profiles::is_number`] reads one (with its length).
const NUMBER_PATTERN: &str = "-?[0-9]+(?:[.][0-9]+)?";

/// The profile's top-level string fields a criterion can read, in the model's order.
fn string_fields() -> Vec<&'static str> {
    let mut fields: Vec<&str> = ProfileAttributes::default()
        .strings()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    fields.extend(["BirthDate", "ProfileType"]);
    fields
}

/// The four addresses and their parts a criterion can read.
fn addresses() -> Vec<(&'static str, Vec<&'static str>)> {
    let parts: Vec<&str> = AddressDimension::default()
        .parts()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    ProfileAttributes::default()
        .addresses()
        .iter()
        .map(|(n, _)| (*n, parts.clone()))
        .collect()
}

/// Spark's schema of a profile: what a criterion can read.
pub(super) fn spark_schema() -> String {
    let mut columns = vec!["ProfileId STRING".to_string()];
    columns.extend(string_fields().iter().map(|f| format!("{f} STRING")));
    for (address, parts) in addresses() {
        let parts: Vec<String> = parts.iter().map(|p| format!("{p}: STRING")).collect();
        columns.push(format!("{address} STRUCT<{}>", parts.join(", ")));
    }
    columns.push("Attributes MAP<STRING, STRING>".into());
    format!("{}\n", columns.join(", "))
}

/// DuckDB's reading of profile files: `read_json` with the profile's columns.
pub(super) fn duckdb_read(files: &str) -> String {
    let mut columns = vec!["'ProfileId': 'VARCHAR'".to_string()];
    columns.extend(string_fields().iter().map(|f| format!("'{f}': 'VARCHAR'")));
    for (address, parts) in addresses() {
        let parts: Vec<String> = parts.iter().map(|p| format!("{p} VARCHAR")).collect();
        columns.push(format!("'{address}': 'STRUCT({})'", parts.join(", ")));
    }
    columns.push("'Attributes': 'MAP(VARCHAR, VARCHAR)'".into());
    format!(
        "read_json({}, format = 'newline_delimited', compression = 'auto', columns = {{{}}})",
        Dialect::DuckDb.string(files),
        columns.join(", ")
    )
}

/// The profile's id.
pub(super) fn id(d: Dialect) -> String {
    match d {
        Dialect::Postgres => "(record->>'ProfileId')".into(),
        _ => d.ident("ProfileId"),
    }
}

/// A slot's value as text, NULL when it is missing (absent, null or `""`).
fn value(d: Dialect, source: Source, name: &str) -> String {
    let path = match (source, d) {
        (Source::ProfileField, Dialect::Postgres) => match name.split_once('.') {
            Some((object, part)) => {
                format!("(record->{}->>{})", d.string(object), d.string(part))
            }
            None => format!("(record->>{})", d.string(name)),
        },
        (Source::ProfileField, _) => match name.split_once('.') {
            Some((object, part)) => format!("{}.{}", d.ident(object), d.ident(part)),
            None => d.ident(name),
        },
        (_, Dialect::Postgres) => format!("(record->'Attributes'->>{})", d.string(name)),
        (_, _) => format!("{}[{}]", d.ident("Attributes"), d.string(name)),
    };
    format!("nullif({path}, '')")
}

/// A slot: the list of its values (a jsonb array in PostgreSQL).
pub(super) fn list(d: Dialect, source: Source, name: &str) -> String {
    let v = value(d, source, name);
    let (empty, alone, parse) = match d {
        Dialect::Spark => (
            "CAST(array() AS ARRAY<STRING>)".to_string(),
            format!("array({v})"),
            format!("from_json({v}, 'ARRAY<STRING>')"),
        ),
        Dialect::DuckDb => (
            "CAST([] AS VARCHAR[])".to_string(),
            format!("[{v}]"),
            format!("from_json({v}, '[\"VARCHAR\"]')"),
        ),
        Dialect::Postgres => (
            "CAST('[]' AS jsonb)".to_string(),
            format!("jsonb_build_array({v})"),
            format!("CAST({v} AS jsonb)"),
        ),
    };
    let elements = if source == Source::ProfileAttributeList {
        format!("WHEN {} THEN {parse} ", full_match(d, &v, LIST_PATTERN))
    } else {
        String::new()
    };
    format!("(CASE WHEN {v} IS NULL THEN {empty} {elements}ELSE {alone} END)")
}

/// The instants of a slot's values read as dates or instants (a date is its midnight UTC),
/// unparsable ones NULL.
pub(super) fn instants(d: Dialect, list: &str) -> String {
    let as_instant = |y: &str| {
        format!(
            "(CASE WHEN {} THEN concat({y}, 'T00:00:00Z') ELSE {y} END)",
            full_match(d, y, DATE_PATTERN)
        )
    };
    match d {
        Dialect::Spark => format!(
            "transform(transform({list}, y -> {}), x -> {})",
            as_instant("y"),
            d.instant("x")
        ),
        Dialect::DuckDb => format!(
            "list_transform(list_transform({list}, lambda y: {}), lambda x: {})",
            as_instant("y"),
            d.instant("x")
        ),
        Dialect::Postgres => format!(
            "ARRAY(SELECT {} FROM (SELECT {} AS x FROM jsonb_array_elements_text({}) AS e0(y)) AS e)",
            d.instant("e.x"),
            as_instant("e0.y"),
            pg_array(list)
        ),
    }
}

/// `x` (text) as a double when it is a number as comparisons read one, else NULL.
pub(super) fn number(d: Dialect, x: &str) -> String {
    let ty = match d {
        Dialect::Postgres => "double precision",
        _ => "DOUBLE",
    };
    format!(
        "(CASE WHEN length({x}) <= {MAX_NUMBER_LEN} AND {} THEN CAST({x} AS {ty}) END)",
        full_match(d, x, NUMBER_PATTERN)
    )
}

/// Whether all of `s` matches `pattern` (a regular expression every engine reads alike).
fn full_match(d: Dialect, s: &str, pattern: &str) -> String {
    match d {
        // Java's `$` also matches before a final line end; `\z` does not.
        Dialect::Spark => format!("({s} RLIKE {})", d.string(&format!("^(?:{pattern})\\z"))),
        Dialect::DuckDb => format!("regexp_full_match({s}, {})", d.string(pattern)),
        Dialect::Postgres => format!("({s} ~ {})", d.string(&format!("^(?:{pattern})$"))),
    }
}
