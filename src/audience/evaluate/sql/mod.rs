//! A compiled [`Program`] as SQL, for Spark, DuckDB and PostgreSQL: the same nodes and
//! criteria, said in each engine's words, so an engine's count equals the evaluator's.
//!
//! The query has the program's shape. A first step (`slots`) reads from each record what
//! some criterion reads, once: the fields, attribute lists and metrics by name, the
//! instants of the dated lists, `EffectiveDate`, position, ids. Then one step per level of
//! nesting computes the nodes (a node only reads nodes of lower levels, as base segments
//! come before the segments built on them), and the last step counts, or lists members.
//!
//! Nothing is left to an engine's own reading of dates or time zones: instants are parsed
//! by the grammar of [`super::instant`], with integer arithmetic, into nanoseconds since the
//! epoch (an exact decimal), so the session time zone cannot change an answer. Every
//! criterion is two-valued (`coalesce(…, false)`), as the evaluator's are: a missing value
//! never makes a whole segment unknown. Names and values are literals, quoted for the
//! dialect; nothing from a manifest is ever spliced into SQL otherwise.
//!
//! A program over Customer Profiles profiles reads profiles instead ([`profiles`]): the
//! same steps, its slots read by the profile's paths and grammars.

mod profiles;

use std::fmt::Write as _;

use super::{Criterion, Field, Node, Program, Source, EARTH_RADIUS_KM};
use crate::model::{ComparisonOperator, Include};

/// Which engine the SQL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Spark SQL (3.4 or later; local, EMR, Glue, Databricks), over a table or view of the
    /// records read with [`Dialect::schema`].
    Spark,
    /// DuckDB (1.3 or later), reading the NDJSON files with `read_json`.
    DuckDb,
    /// PostgreSQL (12 or later), over a table of one `jsonb` record per row.
    Postgres,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Spark => "spark",
            Dialect::DuckDb => "duckdb",
            Dialect::Postgres => "postgres",
        }
    }
}

/// What the records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Pinpoint endpoints, as Pinpoint exports them (`EndpointResponse` objects).
    Endpoints,
    /// Customer Profiles profiles, as SearchProfiles returns them and a segment snapshot
    /// writes them (`Profile` objects).
    Profiles,
}

/// Where the records are.
#[derive(Debug, Clone)]
pub struct Input {
    pub records: Records,
    /// A table or view of the records (Spark and PostgreSQL read `endpoints` or `profiles`
    /// without one; DuckDB reads `files` without one).
    pub table: Option<String>,
    /// DuckDB: the NDJSON files, plain or gzip, by path or glob (what `--schema` loads into
    /// `table` when there is one).
    pub files: String,
}

impl Input {
    fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(match self.records {
            Records::Endpoints => "endpoints",
            Records::Profiles => "profiles",
        })
    }

    /// What DuckDB reads without a table.
    fn duckdb_read(&self) -> String {
        match self.records {
            Records::Endpoints => duckdb_read(&self.files),
            Records::Profiles => profiles::duckdb_read(&self.files),
        }
    }
}

/// What the query returns.
#[derive(Debug, Clone)]
pub enum Output {
    /// One row: `records`, then one count per `(column name, node)`.
    Counts(Vec<(String, super::NodeId)>),
    /// The `Id` of every record the node holds (that has one), one per row, ordered.
    Members(super::NodeId),
}

/// The record shape read by Spark (`spark.read.schema(…)`) and DuckDB (`read_json`'s
/// `columns`): only the fields a segment can read; others are ignored.
const SPARK_SCHEMA: &str = "Id STRING, ChannelType STRING, EffectiveDate STRING, \
Demographic STRUCT<AppVersion: STRING, Make: STRING, Model: STRING, Platform: STRING>, \
Location STRUCT<Country: STRING, Latitude: DOUBLE, Longitude: DOUBLE>, \
Attributes MAP<STRING, ARRAY<STRING>>, Metrics MAP<STRING, DOUBLE>, \
`User` STRUCT<UserId: STRING, UserAttributes: MAP<STRING, ARRAY<STRING>>>";

const DUCKDB_COLUMNS: &str = "{'Id': 'VARCHAR', 'ChannelType': 'VARCHAR', \
'EffectiveDate': 'VARCHAR', \
'Demographic': 'STRUCT(AppVersion VARCHAR, Make VARCHAR, Model VARCHAR, Platform VARCHAR)', \
'Location': 'STRUCT(Country VARCHAR, Latitude DOUBLE, Longitude DOUBLE)', \
'Attributes': 'MAP(VARCHAR, VARCHAR[])', 'Metrics': 'MAP(VARCHAR, DOUBLE)', \
'User': 'STRUCT(UserId VARCHAR, UserAttributes MAP(VARCHAR, VARCHAR[]))'}";

impl Dialect {
    /// What the records must be read as: Spark's schema (a DDL string for
    /// `spark.read.schema`), DuckDB's view over the files, PostgreSQL's table.
    pub fn schema(self, input: &Input) -> String {
        let t = input.table();
        match (self, input.records) {
            (Dialect::Spark, Records::Endpoints) => format!("{SPARK_SCHEMA}\n"),
            (Dialect::Spark, Records::Profiles) => profiles::spark_schema(),
            (Dialect::DuckDb, _) => format!(
                "CREATE {} {t} AS SELECT * FROM {};\n",
                if input.table.is_some() { "TABLE" } else { "VIEW" },
                input.duckdb_read()
            ),
            (Dialect::Postgres, records) => format!(
                "CREATE TABLE {t} (record jsonb NOT NULL);\n\
                 -- Load NDJSON as it is (no COPY escapes): \\copy {t} (record) FROM '{}' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')\n",
                match records {
                    Records::Endpoints => "endpoints.jsonl",
                    Records::Profiles => "profiles.jsonl",
                }
            ),
        }
    }

    /// `s` as a string literal the engine reads back as `s`.
    ///
    /// - Spark reads `\` in a literal as an escape (its default; the query needs
    ///   `spark.sql.parser.escapedStringLiterals` off): `\` and `'` are both escaped.
    /// - DuckDB reads `\` in a literal as itself: only `'` is doubled.
    /// - PostgreSQL reads `'…'` by `standard_conforming_strings`, which a database, role or
    ///   session may turn off (a value ending in `\` would then swallow the closing quote):
    ///   an escape string `E'…'`, with `\` and `'` escaped, reads the same under either.
    fn string(self, s: &str) -> String {
        match self {
            Dialect::Spark => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Dialect::DuckDb => format!("'{}'", s.replace('\'', "''")),
            Dialect::Postgres => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        }
    }

    fn ident(self, s: &str) -> String {
        match self {
            Dialect::Spark => format!("`{}`", s.replace('`', "``")),
            Dialect::DuckDb | Dialect::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
        }
    }

    fn double(self, v: f64) -> String {
        // Rust's shortest text that reads back as the same double, read as a double.
        let ty = match self {
            Dialect::Postgres => "double precision",
            _ => "DOUBLE",
        };
        format!("CAST('{v:?}' AS {ty})")
    }

    fn nanos(self, v: i128) -> String {
        let ty = match self {
            Dialect::Spark => "DECIMAL(38,0)",
            Dialect::DuckDb => "HUGEINT",
            Dialect::Postgres => "numeric",
        };
        format!("CAST('{v}' AS {ty})")
    }

    fn div(self, a: &str, b: i64) -> String {
        match self {
            Dialect::Spark => format!("({a} div {b})"),
            Dialect::DuckDb => format!("({a} // {b})"),
            Dialect::Postgres => format!("({a} / {b})"),
        }
    }

    /// An exists-in-list test: does some element `x` of `list` satisfy `cond` (written with
    /// `x`)? False for a missing or empty list.
    fn any(self, list: &str, var: &str, cond: &str) -> String {
        match self {
            Dialect::Spark => {
                format!("coalesce(exists({list}, {var} -> coalesce({cond}, false)), false)")
            }
            Dialect::DuckDb => {
                format!("coalesce(len(list_filter({list}, lambda {var}: {cond})) > 0, false)")
            }
            // `list` is a SQL array here (instants), or jsonb (see `any_text`).
            Dialect::Postgres => {
                format!("EXISTS (SELECT 1 FROM unnest({list}) AS u({var}) WHERE {cond})")
            }
        }
    }

    /// As `any`, over an attribute list (jsonb in PostgreSQL).
    fn any_text(self, list: &str, var: &str, cond: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text({}) AS e({var}) WHERE {cond})",
                pg_array(list)
            ),
            _ => self.any(list, var, cond),
        }
    }

    fn regex_match(self, s: &str) -> String {
        const INSTANT: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})";
        match self {
            // Java's `$` also matches before a final line end; `\z` does not.
            Dialect::Spark => format!("({s} RLIKE '{INSTANT}\\\\z')"),
            Dialect::DuckDb => format!("regexp_full_match({s}, '{INSTANT}$')"),
            Dialect::Postgres => format!("({s} ~ '{INSTANT}$')"),
        }
    }

    /// The instant `s` (a string expression) denotes, in nanoseconds since the epoch, or
    /// NULL: the grammar and arithmetic of [`super::instant`].
    fn instant(self, s: &str) -> String {
        let int = |from: usize, len: usize| format!("CAST(substr({s}, {from}, {len}) AS BIGINT)");
        let (y, mo, d) = (int(1, 4), int(6, 2), int(9, 2));
        let (h, mi, sec) = (int(12, 2), int(15, 2), int(18, 2));
        let zulu = format!("(upper(right({s}, 1)) = 'Z')");
        let oh = format!("CAST(substr({s}, length({s}) - 4, 2) AS BIGINT)");
        let om = format!("CAST(substr({s}, length({s}) - 1, 2) AS BIGINT)");
        let offset = format!(
            "(CASE WHEN {zulu} THEN 0 ELSE (CASE WHEN substr({s}, length({s}) - 5, 1) = '-' THEN -1 ELSE 1 END) * ({oh} * 3600 + {om} * 60) END)"
        );
        let fraction = format!(
            "(CASE WHEN substr({s}, 20, 1) = '.' THEN substr({s}, 21, length({s}) - 20 - (CASE WHEN {zulu} THEN 1 ELSE 6 END)) ELSE '' END)"
        );
        let nanos = format!("CAST(substr(concat({fraction}, '000000000'), 1, 9) AS BIGINT)");
        let leap = format!("(({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0)");
        let days_in_month = format!(
            "(CASE WHEN {mo} = 2 THEN (CASE WHEN {leap} THEN 29 ELSE 28 END) WHEN {mo} IN (4, 6, 9, 11) THEN 30 ELSE 31 END)"
        );
        let valid = format!(
            "({mo} BETWEEN 1 AND 12 AND {d} BETWEEN 1 AND {days_in_month} AND {h} <= 23 AND {mi} <= 59 AND {sec} <= 59 AND ({zulu} OR ({oh} <= 23 AND {om} <= 59)))"
        );
        // days_from_civil, the year shifted by 400 (non-negative divisions only).
        let yy = format!("({y} - (CASE WHEN {mo} <= 2 THEN 1 ELSE 0 END) + 400)");
        let era = self.div(&yy, 400);
        let yoe = format!("({yy} - {era} * 400)");
        let mp = format!("(CASE WHEN {mo} > 2 THEN {mo} - 3 ELSE {mo} + 9 END)");
        let doy = format!("({} + {d} - 1)", self.div(&format!("(153 * {mp} + 2)"), 5));
        let doe = format!(
            "({yoe} * 365 + {} - {} + {doy})",
            self.div(&yoe, 4),
            self.div(&yoe, 100)
        );
        let days = format!("({era} * 146097 + {doe} - 719468 - 146097)");
        let secs = format!("({days} * 86400 + {h} * 3600 + {mi} * 60 + {sec} - {offset})");
        let wide = match self {
            Dialect::Spark => format!("CAST({secs} AS DECIMAL(38,0))"),
            Dialect::DuckDb => format!("CAST({secs} AS HUGEINT)"),
            Dialect::Postgres => format!("CAST({secs} AS numeric)"),
        };
        format!(
            "(CASE WHEN {} THEN (CASE WHEN {valid} THEN {wide} * 1000000000 + {nanos} END) END)",
            self.regex_match(s)
        )
    }
}

fn duckdb_read(files: &str) -> String {
    format!(
        "read_json({}, format = 'newline_delimited', compression = 'auto', columns = {DUCKDB_COLUMNS})",
        Dialect::DuckDb.string(files)
    )
}

/// A jsonb value as an array for `jsonb_array_elements_text` (NULL when it is not one).
fn pg_array(v: &str) -> String {
    format!("(CASE WHEN jsonb_typeof({v}) = 'array' THEN {v} END)")
}

/// Where each value a criterion reads comes from, for one dialect.
struct Paths {
    d: Dialect,
}

impl Paths {
    fn top(&self, name: &str) -> String {
        match self.d {
            Dialect::Postgres => format!("(record->>{})", self.d.string(name)),
            _ => self.d.ident(name),
        }
    }

    fn nested(&self, object: &str, name: &str) -> String {
        match self.d {
            Dialect::Postgres => format!(
                "(record->{}->>{})",
                self.d.string(object),
                self.d.string(name)
            ),
            _ => format!("{}.{}", self.d.ident(object), self.d.ident(name)),
        }
    }

    fn number(&self, object: &str, name: &str) -> String {
        match self.d {
            Dialect::Postgres => format!("CAST({} AS double precision)", self.nested(object, name)),
            _ => self.nested(object, name),
        }
    }

    fn field(&self, f: Field) -> String {
        match f {
            Field::Channel => self.top("ChannelType"),
            Field::AppVersion => self.nested("Demographic", "AppVersion"),
            Field::Make => self.nested("Demographic", "Make"),
            Field::Model => self.nested("Demographic", "Model"),
            Field::Platform => self.nested("Demographic", "Platform"),
            Field::Country => self.nested("Location", "Country"),
        }
    }

    fn list(&self, user: bool, name: &str) -> String {
        let key = self.d.string(name);
        match (self.d, user) {
            (Dialect::Postgres, false) => format!("(record->'Attributes'->{key})"),
            (Dialect::Postgres, true) => format!("(record->'User'->'UserAttributes'->{key})"),
            (_, false) => format!("{}[{key}]", self.d.ident("Attributes")),
            (_, true) => format!(
                "{}.{}[{key}]",
                self.d.ident("User"),
                self.d.ident("UserAttributes")
            ),
        }
    }

    fn metric(&self, name: &str) -> String {
        let key = self.d.string(name);
        match self.d {
            Dialect::Postgres => {
                format!("CAST(record->'Metrics'->>{key} AS double precision)")
            }
            _ => format!("{}[{key}]", self.d.ident("Metrics")),
        }
    }

    /// The instants of a list, unparsable ones NULL.
    fn instants(&self, list: &str) -> String {
        match self.d {
            Dialect::Spark => format!("transform({list}, x -> {})", self.d.instant("x")),
            Dialect::DuckDb => format!("list_transform({list}, lambda x: {})", self.d.instant("x")),
            Dialect::Postgres => format!(
                "ARRAY(SELECT {} FROM jsonb_array_elements_text({}) AS e(x))",
                self.d.instant("e.x"),
                pg_array(list)
            ),
        }
    }
}

const FIELD_COLUMNS: [(Field, &str); super::FIELDS] = [
    (Field::Channel, "s_channel"),
    (Field::AppVersion, "s_app_version"),
    (Field::Make, "s_make"),
    (Field::Model, "s_model"),
    (Field::Platform, "s_platform"),
    (Field::Country, "s_country"),
];

/// What the program reads, so the first step reads nothing else.
#[derive(Default)]
struct Used {
    fields: [bool; super::FIELDS],
    position: bool,
    ids: bool,
}

impl Program {
    /// What the program (and the output) reads of a record.
    fn used(&self, output: &Output) -> Used {
        let mut used = Used::default();
        for node in &self.nodes {
            let mut see = |c: &Criterion| match c {
                Criterion::Set { field, .. } => used.fields[*field as usize] = true,
                Criterion::Gps { .. } => used.position = true,
                _ => {}
            };
            match node {
                Node::All(cs) => cs.iter().for_each(&mut see),
                Node::Groups { groups, .. } => groups
                    .iter()
                    .flat_map(|g| g.dimensions.iter().flatten())
                    .for_each(&mut see),
                Node::Members(_) => used.ids = true,
                Node::Never => {}
            }
        }
        if matches!(output, Output::Members(_)) {
            used.ids = true;
        }
        used
    }

    /// The program as one SQL query for `dialect` over `input` (whose records are the
    /// program's: endpoints, or profiles for a program over Customer Profiles).
    pub fn sql(&self, dialect: Dialect, input: &Input, output: &Output) -> String {
        debug_assert_eq!(
            self.schema.profiles,
            input.records == Records::Profiles,
            "the records are the program's"
        );
        let d = dialect;
        let used = self.used(output);
        let slots = self.slots(d, &used);
        let from = match (&input.table, d) {
            (None, Dialect::DuckDb) => input.duckdb_read(),
            _ => input.table().to_string(),
        };

        // Levels: a node one above the highest base it reads.
        let mut level = vec![0usize; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Groups { groups, .. } = node {
                level[i] = groups
                    .iter()
                    .flat_map(|g| &g.sources)
                    .map(|s| level[*s] + 1)
                    .max()
                    .unwrap_or(0);
            }
        }
        let levels = level.iter().copied().max().map_or(0, |m| m + 1);

        let mut q = String::new();
        // PostgreSQL inlines a CTE read once into its reader, and so each node's expression
        // into every node built on it: materialized, each step is computed once per record.
        let step = match d {
            Dialect::Postgres => "AS MATERIALIZED",
            _ => "AS",
        };
        let _ = write!(q, "WITH slots {step} (\n  SELECT\n    ");
        q.push_str(&slots.join(",\n    "));
        let _ = write!(q, "\n  FROM {from}\n)");
        let mut previous = "slots".to_string();
        for l in 0..levels {
            let columns: Vec<String> = (0..self.nodes.len())
                .filter(|i| level[*i] == l)
                .map(|i| format!("{} AS n_{i}", self.node_sql(d, i)))
                .collect();
            let _ = write!(
                q,
                ",\nlevel_{l} {step} (\n  SELECT *,\n    {}\n  FROM {previous}\n)",
                columns.join(",\n    ")
            );
            previous = format!("level_{l}");
        }
        q.push('\n');
        match output {
            Output::Counts(columns) => {
                q.push_str("SELECT\n  count(*) AS records");
                for (name, node) in columns {
                    let _ = write!(
                        q,
                        ",\n  count(CASE WHEN n_{node} THEN 1 END) AS {}",
                        d.ident(name)
                    );
                }
                let _ = writeln!(q, "\nFROM {previous};");
            }
            Output::Members(node) => {
                let column = if self.schema.profiles {
                    "ProfileId"
                } else {
                    "Id"
                };
                let _ = writeln!(
                    q,
                    "SELECT s_id AS {}\nFROM {previous}\nWHERE n_{node} AND s_id IS NOT NULL\nORDER BY s_id;",
                    d.ident(column)
                );
            }
        }
        q
    }

    /// The first step's columns: what the criteria (and the output) read of a record.
    fn slots(&self, d: Dialect, used: &Used) -> Vec<String> {
        let paths = Paths { d };
        let mut slots: Vec<String> = vec!["TRUE AS s_record".into()];
        for (f, col) in FIELD_COLUMNS {
            if used.fields[f as usize] {
                slots.push(format!("{} AS {col}", paths.field(f)));
            }
        }
        if used.ids && self.schema.profiles {
            slots.push(format!("{} AS s_id", profiles::id(d)));
        } else if used.ids {
            slots.push(format!("{} AS s_id", paths.top("Id")));
            slots.push(format!("{} AS s_user_id", paths.nested("User", "UserId")));
        }
        if used.position {
            slots.push(format!(
                "{} AS s_latitude",
                paths.number("Location", "Latitude")
            ));
            slots.push(format!(
                "{} AS s_longitude",
                paths.number("Location", "Longitude")
            ));
        }
        if self.schema.recency {
            slots.push(format!(
                "{} AS s_effective",
                d.instant(&paths.top("EffectiveDate"))
            ));
        }
        for (i, (source, name)) in self.schema.lists.iter().enumerate() {
            let (list, times) = match *source {
                Source::Attributes { user } => {
                    let list = paths.list(user, name);
                    let times = paths.instants(&list);
                    (list, times)
                }
                profile => {
                    let list = profiles::list(d, profile, name);
                    let times = profiles::instants(d, &list);
                    (list, times)
                }
            };
            if self.schema.dated[i] {
                slots.push(format!("{times} AS s_times_{i}"));
            }
            slots.push(format!("{list} AS s_list_{i}"));
        }
        for (i, name) in self.schema.metrics.iter().enumerate() {
            slots.push(format!("{} AS s_metric_{i}", paths.metric(name)));
        }
        slots
    }

    fn node_sql(&self, d: Dialect, i: usize) -> String {
        match &self.nodes[i] {
            Node::All(criteria) => self.all_sql(d, criteria),
            Node::Groups { include, groups } => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        let sources: Vec<String> =
                            g.sources.iter().map(|s| format!("n_{s}")).collect();
                        let dimensions: Vec<String> =
                            g.dimensions.iter().map(|c| self.all_sql(d, c)).collect();
                        let sources = if sources.is_empty() {
                            "TRUE".to_string()
                        } else {
                            combine(g.source_type, &sources)
                        };
                        let dimensions = if dimensions.is_empty() {
                            "TRUE".to_string()
                        } else {
                            combine(g.group_type, &dimensions)
                        };
                        format!("({sources} AND {dimensions})")
                    })
                    .collect();
                combine(*include, &groups)
            }
            Node::Members(m) => {
                let mut ids: Vec<&str> = m.ids.iter().map(|s| &**s).collect();
                let mut users: Vec<&str> = m.users.iter().map(|s| &**s).collect();
                ids.sort_unstable();
                users.sort_unstable();
                format!(
                    "({} OR {})",
                    in_list(d, "s_id", &ids),
                    in_list(d, "s_user_id", &users)
                )
            }
            Node::Never => "FALSE".into(),
        }
    }

    fn all_sql(&self, d: Dialect, criteria: &[Criterion]) -> String {
        if criteria.is_empty() {
            return "TRUE".into();
        }
        let parts: Vec<String> = criteria.iter().map(|c| self.criterion_sql(d, c)).collect();
        format!("({})", parts.join(" AND "))
    }

    fn criterion_sql(&self, d: Dialect, c: &Criterion) -> String {
        let not = |negate: bool, s: String| if negate { format!("(NOT {s})") } else { s };
        match c {
            Criterion::Affix { .. } | Criterion::Compared { .. } | Criterion::ListedAll { .. } => {
                profile_criterion_sql(d, c)
            }
            Criterion::Constant(v) => if *v { "TRUE" } else { "FALSE" }.into(),
            Criterion::Set {
                field,
                values,
                exclusive,
                ..
            } => {
                let col = FIELD_COLUMNS[*field as usize].1;
                let values: Vec<&str> = values.iter().map(|v| &**v).collect();
                not(*exclusive, in_list(d, col, &values))
            }
            Criterion::Listed {
                slot,
                values,
                exclusive,
                ..
            } => {
                let list = format!("s_list_{slot}");
                let listed = if values.is_empty() {
                    "FALSE".to_string()
                } else {
                    let lits: Vec<String> = values.iter().map(|v| d.string(v)).collect();
                    let lits = lits.join(", ");
                    match d {
                        Dialect::Spark => {
                            format!("coalesce(arrays_overlap({list}, array({lits})), false)")
                        }
                        Dialect::DuckDb => {
                            format!("coalesce(list_has_any({list}, [{lits}]), false)")
                        }
                        Dialect::Postgres => format!(
                            "coalesce(jsonb_exists_any({}, ARRAY[{lits}]::text[]), false)",
                            pg_array(&list)
                        ),
                    }
                };
                not(*exclusive, listed)
            }
            Criterion::Contains { slot, values, .. } => {
                if values.is_empty() {
                    return "FALSE".into();
                }
                let cond: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let v = d.string(v);
                        match d {
                            Dialect::Spark => format!("instr(x, {v}) > 0"),
                            Dialect::DuckDb => format!("contains(x, {v})"),
                            Dialect::Postgres => format!("strpos(x, {v}) > 0"),
                        }
                    })
                    .collect();
                d.any_text(&format!("s_list_{slot}"), "x", &cond.join(" OR "))
            }
            Criterion::Dated {
                slot,
                lo,
                hi,
                negate,
            } => {
                let cond = between(d, "t", *lo, *hi);
                not(*negate, d.any(&format!("s_times_{slot}"), "t", &cond))
            }
            Criterion::Metric { slot, op, value } => format!(
                "coalesce(s_metric_{slot} {} {}, false)",
                operator(*op),
                d.double(*value)
            ),
            Criterion::Gps { from, range } => {
                let (latitude, longitude) = (&from.latitude, &from.longitude);
                // The evaluator's `distance_km`, operation for operation.
                let rad = d.double(std::f64::consts::PI / 180.0);
                let half_dp = format!(
                    "((s_latitude - {}) * {rad} / {})",
                    d.double(*latitude),
                    d.double(2.0)
                );
                let half_dl = format!(
                    "((s_longitude - {}) * {rad} / {})",
                    d.double(*longitude),
                    d.double(2.0)
                );
                let h = format!(
                    "(sin({half_dp}) * sin({half_dp}) + {} * cos(s_latitude * {rad}) * (sin({half_dl}) * sin({half_dl})))",
                    d.double(from.cos_latitude)
                );
                format!(
                    "coalesce({} * asin(least(sqrt({h}), {})) <= {}, false)",
                    d.double(2.0 * EARTH_RADIUS_KM),
                    d.double(1.0),
                    d.double(*range)
                )
            }
            Criterion::Recency { lo, hi, active } => {
                let within = format!("coalesce({}, false)", between(d, "s_effective", *lo, *hi));
                not(!*active, within)
            }
        }
    }
}

/// The criteria only profile programs hold (Customer Profiles' BEGINS_WITH, ENDS_WITH,
/// comparisons and LIST_CONTAINS_ALL), over list slots.
fn profile_criterion_sql(d: Dialect, c: &Criterion) -> String {
    match c {
        Criterion::Affix { slot, values, end } => {
            let cond: Vec<String> = values.iter().map(|v| affix(d, "x", v, *end)).collect();
            if cond.is_empty() {
                return "FALSE".into();
            }
            d.any_text(&format!("s_list_{slot}"), "x", &cond.join(" OR "))
        }
        Criterion::Compared { slot, op, values } => {
            let n = profiles::number(d, "x");
            let cond: Vec<String> = values
                .iter()
                .map(|v| format!("{n} {} {}", operator(*op), d.double(*v)))
                .collect();
            if cond.is_empty() {
                return "FALSE".into();
            }
            d.any_text(&format!("s_list_{slot}"), "x", &cond.join(" OR "))
        }
        Criterion::ListedAll { slot, values } => {
            let list = format!("s_list_{slot}");
            let each: Vec<String> = values
                .iter()
                .map(|v| {
                    let v = d.string(v);
                    match d {
                        Dialect::Spark => format!("array_contains({list}, {v})"),
                        Dialect::DuckDb => format!("list_contains({list}, {v})"),
                        Dialect::Postgres => format!("jsonb_exists({}, {v})", pg_array(&list)),
                    }
                })
                .collect();
            format!("coalesce({}, false)", each.join(" AND "))
        }
        _ => unreachable!("only the profile criteria come here"),
    }
}

fn operator(op: ComparisonOperator) -> &'static str {
    match op {
        ComparisonOperator::GreaterThan => ">",
        ComparisonOperator::LessThan => "<",
        ComparisonOperator::GreaterThanOrEqual => ">=",
        ComparisonOperator::LessThanOrEqual => "<=",
        ComparisonOperator::Equal => "=",
    }
}

/// Whether the text `x` starts (`end`: ends) with `v`, compared exactly.
fn affix(d: Dialect, x: &str, v: &str, end: bool) -> String {
    let lit = d.string(v);
    match (d, end) {
        (Dialect::Spark, false) => format!("startswith({x}, {lit})"),
        (Dialect::Spark, true) => format!("endswith({x}, {lit})"),
        (Dialect::DuckDb, false) => format!("starts_with({x}, {lit})"),
        (Dialect::DuckDb, true) => format!("suffix({x}, {lit})"),
        (Dialect::Postgres, false) => format!("starts_with({x}, {lit})"),
        // By characters, as `right` counts them.
        (Dialect::Postgres, true) => format!("(right({x}, {}) = {lit})", v.chars().count()),
    }
}

/// `lo <= v AND v <= hi`, open ends left out.
fn between(d: Dialect, v: &str, lo: i128, hi: i128) -> String {
    let mut parts = Vec::new();
    if lo != i128::MIN {
        parts.push(format!("{v} >= {}", d.nanos(lo)));
    }
    if hi != i128::MAX {
        parts.push(format!("{v} <= {}", d.nanos(hi)));
    }
    if parts.is_empty() {
        return format!("{v} IS NOT NULL");
    }
    parts.join(" AND ")
}

fn in_list(d: Dialect, column: &str, values: &[&str]) -> String {
    if values.is_empty() {
        return "FALSE".into();
    }
    let lits: Vec<String> = values.iter().map(|v| d.string(v)).collect();
    format!("coalesce({column} IN ({}), false)", lits.join(", "))
}

fn combine(how: Include, parts: &[String]) -> String {
    match (how, parts.is_empty()) {
        (Include::All | Include::None, true) => "TRUE".into(),
        (Include::Any, true) => "FALSE".into(),
        (Include::All, false) => format!("({})", parts.join(" AND ")),
        (Include::Any, false) => format!("({})", parts.join(" OR ")),
        (Include::None, false) => format!("(NOT ({}))", parts.join(" OR ")),
    }
}
