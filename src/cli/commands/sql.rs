//! `sql`: the selected segments as one query for Spark, DuckDB or PostgreSQL.

use crate::reconcile::pipeline::{Inputs, Overrides};
use crate::text::out;
use std::path::PathBuf;

use crate::audience::evaluate::sql::{Dialect, Input, Output};

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
    /// How the records must be read, instead of a query.
    pub schema: bool,
    pub as_of: Option<String>,
    pub table: Option<String>,
    pub files: String,
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
                crate::text::safe(t)
            ));
        }
    }
    let input = Input {
        table: a.table.clone(),
        files: a.files.clone(),
    };
    if a.schema {
        out(&dialect.schema(&input));
        return Ok(exit::OK);
    }
    let ws = load(&Inputs {
        dir: a.dir.clone(),
        config: a.config.clone(),
        overrides: Overrides::default(),
    })?;
    let as_of = parse_as_of(a.as_of.as_deref())?;
    let compiled = compile_segments(&ws, as_of, &a.segments, Unreadable::Refuse)?;
    let several = ws.desired.apps.len() > 1;
    let columns: Vec<(String, crate::audience::evaluate::NodeId)> = compiled
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
    let program = compiled.program;
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
    let what = match &output {
        Output::Counts(_) => format!(
            "the number of records, then each segment's audience ({} segments)",
            columns.len()
        ),
        Output::Members(_) => "the Id of each endpoint in the segment, ordered".to_string(),
    };
    let query = program.sql(dialect, &input, &output)?;
    out(&format!(
        "-- segmentctl sql --dialect {}: {what}, as of {}.\n-- The evaluator's semantics (README, Audiences); recency is fixed at that instant.\n{query}",
        dialect.name(),
        crate::audience::impact::instant_text(as_of),
    ));
    Ok(exit::OK)
}
