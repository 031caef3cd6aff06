//! `sql`: the selected segments as one query for Spark, DuckDB or PostgreSQL: a folder's
//! Pinpoint segments over endpoints, or Customer Profiles segment definitions (JSON files)
//! over profiles.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::audience::evaluate::profiles::DefinitionCatalog;
use crate::audience::evaluate::sql::{Dialect, Input, Output, Records};
use crate::audience::evaluate::{NodeId, Program};
use crate::model::profiles::{DefinitionDocument, SegmentGroups};
use crate::reconcile::pipeline::{Inputs, Overrides};
use crate::text::{out, safe};

use super::*;

/// What `sql` prints, validated.
pub struct SqlOptions {
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    pub dialect: Dialect,
    /// Only these segments (with their bases); empty: every segment.
    pub segments: Vec<String>,
    /// The members of the one segment selected, instead of the counts.
    pub members: bool,
    /// Customer Profiles definition files, read instead of the folder (the records are
    /// then profiles).
    pub customer_profiles: Vec<PathBuf>,
    /// How the records must be read, instead of a query.
    pub schema: bool,
    pub as_of: Option<String>,
    pub table: Option<String>,
    /// DuckDB's files; default by the kind of records.
    pub files: Option<String>,
}

/// `sql`: the selected segments (with their bases) as one query for an engine.
pub fn sql(a: SqlOptions) -> anyhow::Result<u8> {
    let dialect = a.dialect;
    if let Some(t) = &a.table {
        let plain = |p: &str| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !t.split('.').all(plain) {
            return Err(anyhow::anyhow!(
                "--table {}: expected a table name such as endpoints or analytics.endpoints (letters, digits, _ and .)",
                safe(t)
            ));
        }
    }
    let records = if a.customer_profiles.is_empty() {
        Records::Endpoints
    } else {
        Records::Profiles
    };
    let input = Input {
        records,
        table: a.table.clone(),
        files: a.files.clone().unwrap_or_else(|| {
            match records {
                Records::Endpoints => "endpoints.jsonl",
                Records::Profiles => "profiles.jsonl",
            }
            .into()
        }),
    };
    if a.schema {
        out(&dialect.schema(&input));
        return Ok(exit::OK);
    }
    let as_of = parse_as_of(a.as_of.as_deref())?;
    let (program, columns) = match records {
        Records::Endpoints => pinpoint_program(&a, as_of)?,
        Records::Profiles => profiles_program(&a.customer_profiles, &a.segments, as_of)?,
    };
    let output = if a.members {
        match columns.as_slice() {
            [(_, node)] => Output::Members(*node),
            _ => {
                return Err(anyhow::anyhow!(
                "--members lists the members of one segment: name it with --segment ({} selected)",
                columns.len()
            ))
            }
        }
    } else {
        Output::Counts(columns.clone())
    };
    let what = match (&output, records) {
        (Output::Counts(_), Records::Endpoints) => format!(
            "the number of records, then each segment's audience ({} segments)",
            columns.len()
        ),
        (Output::Counts(_), Records::Profiles) => format!(
            "the number of profiles, then each segment definition's audience ({} definitions)",
            columns.len()
        ),
        (Output::Members(_), Records::Endpoints) => {
            "the Id of each endpoint in the segment, ordered".to_string()
        }
        (Output::Members(_), Records::Profiles) => {
            "the ProfileId of each profile in the segment definition, ordered".to_string()
        }
    };
    let query = program.sql(dialect, &input, &output);
    if dialect == Dialect::Postgres && query.contains('\0') {
        return Err(anyhow::anyhow!(
            "a name or value holds a NUL character, which PostgreSQL text cannot hold: no PostgreSQL query can compare with it"
        ));
    }
    out(&format!(
        "-- segmentctl sql --dialect {}: {what}, as of {}.\n-- The evaluator's semantics (README, Audiences); recency is fixed at that instant.\n{query}",
        dialect.name(),
        crate::audience::impact::instant_text(as_of),
    ));
    Ok(exit::OK)
}

/// The folder's Pinpoint segments, compiled; a column per segment.
fn pinpoint_program(
    a: &SqlOptions,
    as_of: time::OffsetDateTime,
) -> anyhow::Result<(Program, Vec<(String, NodeId)>)> {
    let ws = load(&Inputs {
        dir: a.dir.clone(),
        config: a.config.clone(),
        overrides: Overrides::default(),
    })?;
    let compiled = compile_segments(&ws, as_of, &a.segments, Unreadable::Refuse)?;
    let several = ws.desired.apps.len() > 1;
    let columns = compiled
        .segments
        .iter()
        .map(|c| {
            let label = if several {
                format!("{}/{}", ws.desired.apps[c.app].key, c.name)
            } else {
                c.name.clone()
            };
            (label, c.node)
        })
        .collect();
    Ok((compiled.program, columns))
}

/// Customer Profiles definitions read from `files`, compiled (the ones named in `only`, or
/// all, with their sources); a column per definition.
fn profiles_program(
    files: &[PathBuf],
    only: &[String],
    as_of: time::OffsetDateTime,
) -> anyhow::Result<(Program, Vec<(String, NodeId)>)> {
    let definitions = read_definitions(files)?;
    if let Some(cycle) = cycle(&definitions) {
        return Err(anyhow::anyhow!(
            "SourceSegments lead back to where they start: {}; a definition cannot be built on itself",
            cycle.iter().map(|n| safe(n).into_owned()).collect::<Vec<_>>().join(" → ")
        ));
    }
    let catalog = DefinitionCatalog {
        definitions: definitions
            .iter()
            .map(|(n, (_, g))| (n.clone(), g))
            .collect(),
    };
    let names: Vec<&str> = definitions.keys().map(String::as_str).collect();
    for name in only {
        if !definitions.contains_key(name) {
            let hint = crate::model::closest(name, &names)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            return Err(anyhow::anyhow!(
                "--segment {}: no definition of that name in the files{hint}; they define {}",
                safe(name),
                crate::model::one_of(&names)
            ));
        }
    }
    let mut program = Program::for_profiles(as_of);
    let mut columns = Vec::new();
    for name in &names {
        if only.is_empty() || only.iter().any(|o| o == name) {
            let node = program.add_definition(0, &catalog, name);
            columns.push((name.to_string(), node));
        }
    }
    program.refuse_too_deep().map_err(anyhow::Error::msg)?;
    let unknown: Vec<String> = program.unknown(0).map(|n| safe(n).into_owned()).collect();
    if !unknown.is_empty() {
        return Err(anyhow::anyhow!(
            "SourceSegments name {} that none of the files define: pass the file of each with --customer-profiles",
            unknown.join(", ")
        ));
    }
    Ok((program, columns))
}

/// Every definition of `files`, by name (with the file that defines it), checked against
/// the model; a name defined twice is an error naming both files.
fn read_definitions(
    files: &[PathBuf],
) -> anyhow::Result<BTreeMap<String, (String, SegmentGroups)>> {
    let mut definitions: BTreeMap<String, (String, SegmentGroups)> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in files {
        let shown = safe(&path.display().to_string()).into_owned();
        let documents =
            crate::manifests::folder::read_regular(path, crate::manifests::folder::MAX_FILE_BYTES)
                .map_err(|why| why.to_string())
                .and_then(|bytes| read_documents(path, bytes));
        let documents = match documents {
            Ok(d) => d,
            Err(why) => {
                problems.push(format!("{shown}: {}", safe(&why)));
                continue;
            }
        };
        for (i, d) in documents.into_iter().enumerate() {
            let at = format!("{shown}: definition {}", i + 1);
            let broken = d.violations();
            if !broken.is_empty() {
                problems.extend(
                    broken
                        .iter()
                        .map(|v| format!("{at}: {}", safe(&v.to_string()))),
                );
                continue;
            }
            let name = d.segment_definition_name;
            if let Some((first, _)) = definitions.get(&name) {
                problems.push(format!(
                    "{at}: {name} is defined twice (first in {first}); a domain holds one definition of a name"
                ));
                continue;
            }
            definitions.insert(name, (shown.clone(), d.segment_groups.unwrap_or_default()));
        }
    }
    if !problems.is_empty() {
        return Err(anyhow::anyhow!(
            "the segment definitions do not read:\n  {}",
            problems.join("\n  ")
        ));
    }
    Ok(definitions)
}

/// A file's definitions: YAML `SegmentDefinition` manifests (`.yaml`, `.yml`), else JSON.
fn read_documents(
    path: &std::path::Path,
    bytes: Vec<u8>,
) -> Result<Vec<DefinitionDocument>, String> {
    if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        let text =
            String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
        DefinitionDocument::read_manifests(&text)
    } else {
        DefinitionDocument::read_all(&bytes).map_err(|e| e.to_string())
    }
}

/// A chain of sources that leads back to its start (`a → b → a`), if there is one.
fn cycle(definitions: &BTreeMap<String, (String, SegmentGroups)>) -> Option<Vec<String>> {
    fn sources(g: &SegmentGroups) -> impl Iterator<Item = &str> {
        g.groups
            .iter()
            .flatten()
            .flat_map(|g| g.source_segments.iter().flatten())
            .filter_map(|s| s.segment_definition_name.as_deref())
    }
    // Depth first; `path` is the chain being followed, `done` what leads back nowhere.
    fn visit<'a>(
        name: &'a str,
        definitions: &'a BTreeMap<String, (String, SegmentGroups)>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = path[i..].iter().map(|n| n.to_string()).collect();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        let (_, groups) = definitions.get(name)?;
        path.push(name);
        for source in sources(groups) {
            if let Some(cycle) = visit(source, definitions, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(name);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    definitions
        .keys()
        .find_map(|name| visit(name, definitions, &mut Vec::new(), &mut done))
}
