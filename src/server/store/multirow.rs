//! Many rows in one statement. On SQLite, `INSERT … VALUES (…), (…), …` and `… IN (…)` over
//! a batch, sent in chunks of a few fixed sizes; on PostgreSQL, one statement over the whole
//! batch: `COPY … FROM STDIN (FORMAT binary)` for plain inserts, and for upserts and lookups
//! each column one `text[]` parameter (`INSERT … SELECT … FROM unnest(…)`, `… = ANY(…)`).
//!
//! A statement's text is one of a few per table (prepared statements are cached by their
//! text), and its parameters stay under both databases' limits (SQLite 32,766, PostgreSQL
//! 65,535) whatever the batch's size.

use std::fmt::Write as _;

use super::sql::{Arg, DbError, Dialect, Param, Row, Tx};

/// Rows per statement, largest first: a batch goes out as chunks of these sizes. 500 rows
/// of at most 5 parameters stay far under the limits; measured on the imports bench, larger
/// chunks gave no more records/s on either database.
const SIZES: [usize; 4] = [500, 100, 10, 1];

/// `(?1, …, ?F, ?a, ?b, …), …`: `rows` tuples, each of the `fixed` leading parameters (the
/// same in every row) and `width` of its own, numbered after them.
pub fn tuples(fixed: usize, width: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * (width + fixed) * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        let own = (0..width).map(|c| fixed + r * width + c + 1);
        for (i, n) in (1..=fixed).chain(own).enumerate() {
            let _ = write!(out, "{}?{n}", if i == 0 { "" } else { ", " });
        }
        out.push(')');
    }
    out
}

/// `?a, ?b, …`: `n` placeholders numbered after the `fixed` leading parameters.
pub fn list(fixed: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in 0..n {
        let _ = write!(out, "{}?{}", if i == 0 { "" } else { ", " }, fixed + i + 1);
    }
    out
}

/// Runs `sql(n)`, a statement over `n` rows, on `rows` in chunks of [`SIZES`]: its
/// parameters are `fixed`, then each row's own (`bind` adds them). The rows the statements
/// return, in order.
pub fn chunked<T>(
    tx: &Tx<'_>,
    fixed: &[&dyn Param],
    rows: &[T],
    sql: impl Fn(usize) -> String,
    bind: impl for<'r> Fn(&'r T, &mut Vec<&'r dyn Param>),
) -> Result<Vec<Row>, DbError> {
    let mut out = Vec::new();
    let mut rest = rows;
    let mut params: Vec<&dyn Param> = Vec::new();
    while !rest.is_empty() {
        let n = SIZES.into_iter().find(|&s| s <= rest.len()).unwrap_or(1);
        let (chunk, after) = rest.split_at(n);
        params.clear();
        params.extend_from_slice(fixed);
        for row in chunk {
            bind(row, &mut params);
        }
        out.extend(tx.run(&sql(n), &params)?.rows);
        rest = after;
    }
    Ok(out)
}

/// A batch's column of text values, bound as one parameter: PostgreSQL's `text[]`.
pub struct Texts<'a>(pub Vec<Option<&'a str>>);

impl Param for Texts<'_> {
    fn arg(&self) -> Arg<'_> {
        Arg::Texts(&self.0)
    }
}

/// `rows` as columns: the `width` text parameters `bind` gives each row, one [`Texts`] per
/// column.
fn columns<'r, T>(
    rows: &'r [T],
    width: usize,
    bind: impl Fn(&'r T, &mut Vec<&'r dyn Param>),
) -> Result<Vec<Texts<'r>>, DbError> {
    let mut cols: Vec<Texts<'r>> = (0..width)
        .map(|_| Texts(Vec::with_capacity(rows.len())))
        .collect();
    let mut own = Vec::with_capacity(width);
    for row in rows {
        own.clear();
        bind(row, &mut own);
        for (col, &p) in cols.iter_mut().zip(&own) {
            let p: &'r dyn Param = p;
            col.0.push(match p.arg() {
                Arg::Text(s) => Some(s),
                Arg::Null(_) => None,
                Arg::Int(_) | Arg::Texts(_) => {
                    return Err(DbError::Column("unnest".into(), "expected text"))
                }
            });
        }
    }
    Ok(cols)
}

/// Inserts `rows`: `head` (`INSERT INTO t (columns)`) given the `fixed` leading parameters
/// (the same in every row), then the `width` text values `bind` adds for each row, ending
/// in `tail` (an `ON CONFLICT` clause, or nothing). On PostgreSQL, a plain insert (no
/// `tail`) is one `COPY t (columns) FROM STDIN (FORMAT binary)`, the rows streamed in the
/// server's own binary form; an upsert is one statement over `unnest` of one array per
/// column, in the rows' order: the server sets up no expressions per row, as it does for
/// each tuple of a `VALUES` list (most of its work on a batch of short rows). On SQLite
/// multi-row `VALUES` in chunks ([`chunked`]).
pub fn insert<T>(
    tx: &Tx<'_>,
    (head, tail): (&str, &str),
    fixed: &[&dyn Param],
    width: usize,
    rows: &[T],
    bind: impl for<'r> Fn(&'r T, &mut Vec<&'r dyn Param>),
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx.dialect() {
        Dialect::Postgres if tail.is_empty() => {
            let Some(target) = head.strip_prefix("INSERT INTO ") else {
                return Err(DbError::Schema(format!("not an INSERT INTO: {head}")));
            };
            let mut values: Vec<Arg<'_>> = Vec::with_capacity(rows.len() * (fixed.len() + width));
            let mut own = Vec::with_capacity(width);
            for row in rows {
                own.clear();
                bind(row, &mut own);
                values.extend(
                    fixed
                        .iter()
                        .copied()
                        .chain(own.iter().copied())
                        .map(|p| p.arg()),
                );
            }
            let copy = format!("COPY {target} FROM STDIN (FORMAT binary)");
            tx.copy_in(&copy, fixed.len() + width, &values)?;
        }
        Dialect::Postgres => {
            let cols = columns(rows, width, bind)?;
            let mut params: Vec<&dyn Param> = fixed.to_vec();
            params.extend(cols.iter().map(|c| c as &dyn Param));
            let sql = format!(
                "{head} SELECT {}{}* FROM unnest({}){tail}",
                list(0, fixed.len()),
                if fixed.is_empty() { "" } else { ", " },
                list(fixed.len(), width)
            );
            tx.run(&sql, &params)?;
        }
        Dialect::Sqlite => {
            chunked(
                tx,
                fixed,
                rows,
                |n| format!("{head} VALUES {}{tail}", tuples(fixed.len(), width, n)),
                bind,
            )?;
        }
    }
    Ok(())
}

/// Runs `sql(condition)`, a query whose condition on one text column is `condition`, over
/// the values `bind` gives for `rows` (after the `fixed` leading parameters): on PostgreSQL
/// one statement, `= ANY(?N)` of one array; on SQLite `IN (…)`, in chunks. The rows the
/// statements return.
pub fn any_of<T>(
    tx: &Tx<'_>,
    fixed: &[&dyn Param],
    rows: &[T],
    sql: impl Fn(&str) -> String,
    bind: impl for<'r> Fn(&'r T, &mut Vec<&'r dyn Param>),
) -> Result<Vec<Row>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match tx.dialect() {
        Dialect::Postgres => {
            let cols = columns(rows, 1, bind)?;
            let mut params: Vec<&dyn Param> = fixed.to_vec();
            params.push(&cols[0]);
            let any = format!("= ANY(?{})", fixed.len() + 1);
            Ok(tx.run(&sql(&any), &params)?.rows)
        }
        Dialect::Sqlite => chunked(
            tx,
            fixed,
            rows,
            |n| sql(&format!("IN ({})", list(fixed.len(), n))),
            bind,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::sql::Lite;

    #[test]
    fn placeholders_number_fixed_parameters_first_then_each_rows_own() {
        assert_eq!(tuples(1, 2, 2), "(?1, ?2, ?3), (?1, ?4, ?5)");
        assert_eq!(tuples(0, 1, 3), "(?1), (?2), (?3)");
        assert_eq!(list(1, 3), "?2, ?3, ?4");
    }

    /// 20,001 rows of 4 parameters each: 80,004 in all, over SQLite's limit of 32,766 for one
    /// statement; every row is written, and the statements are of the few sizes only.
    #[test]
    fn a_batch_over_the_parameter_limit_goes_out_in_chunks() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT, a TEXT, b INTEGER, c TEXT, d TEXT)")
            .unwrap();
        let tx = Lite {
            conn: &conn,
            writing: true,
        };
        let rows: Vec<(String, i64)> = (0..20_001).map(|i| (format!("r{i}"), i)).collect();
        let texts = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let key = "k".to_string();
        chunked(
            &tx,
            &[&key],
            &rows,
            |n| {
                let sql = format!("INSERT INTO t VALUES {}", tuples(1, 4, n));
                texts.borrow_mut().insert(n);
                sql
            },
            |(a, b), p| p.extend([a as &dyn Param, b, a, a]),
        )
        .unwrap();
        let (count, sum): (i64, i64) = conn
            .query_row("SELECT COUNT(*), SUM(b) FROM t WHERE k = 'k'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, sum), (20_001, 20_000 * 20_001 / 2));
        assert_eq!(texts.into_inner().into_iter().collect::<Vec<_>>(), [1, 500]);
        let found = chunked(
            &tx,
            &[&key],
            &rows[..123],
            |n| format!("SELECT a FROM t WHERE k = ?1 AND a IN ({})", list(1, n)),
            |(a, _), p| p.push(a),
        )
        .unwrap();
        assert_eq!(found.len(), 123);
    }

    /// On PostgreSQL a batch goes out as one `text[]` per column: each row's values in
    /// order, an absent one as NULL; a column that is not text is refused, never sent as
    /// something else.
    #[test]
    fn a_batch_becomes_one_text_array_per_column_in_row_order_with_its_nulls() {
        let rows = vec![
            ("a".to_string(), Some("u".to_string())),
            ("b".to_string(), None),
        ];
        let cols = columns(&rows, 2, |(id, user), p| p.extend([id as &dyn Param, user])).unwrap();
        assert_eq!(cols[0].0, [Some("a"), Some("b")]);
        assert_eq!(cols[1].0, [Some("u"), None]);
        let ints = [1i64];
        assert!(columns(&ints, 1, |i, p| p.push(i)).is_err());
    }

    /// On SQLite `insert` and `any_of` are the chunked `VALUES` and `IN` lists: the fixed
    /// parameters, then each row's, with the statement's tail (an upsert here) applied.
    #[test]
    fn insert_and_any_of_write_and_find_every_row_on_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT, a TEXT, b TEXT, UNIQUE (k, a))")
            .unwrap();
        let tx = Lite {
            conn: &conn,
            writing: true,
        };
        let key = "k".to_string();
        let rows: Vec<(String, Option<String>)> = (0..1234)
            .map(|i| (format!("r{i}"), (i % 2 == 0).then(|| format!("v{i}"))))
            .collect();
        let head = "INSERT INTO t (k, a, b)";
        let upsert = " ON CONFLICT (k, a) DO UPDATE SET b = excluded.b";
        fn bind<'r>((a, b): &'r (String, Option<String>), p: &mut Vec<&'r dyn Param>) {
            p.extend([a as &dyn Param, b]);
        }
        insert(&tx, (head, ""), &[&key], 2, &rows, bind).unwrap();
        let again: Vec<(String, Option<String>)> = rows[..10]
            .iter()
            .map(|(a, _)| (a.clone(), Some("again".into())))
            .collect();
        insert(&tx, (head, upsert), &[&key], 2, &again, bind).unwrap();
        let found = any_of(
            &tx,
            &[&key],
            &rows,
            |cond| format!("SELECT a, b FROM t WHERE k = ?1 AND a {cond}"),
            |(a, _), p| p.push(a),
        )
        .unwrap();
        assert_eq!(found.len(), 1234);
        let nulls = found
            .iter()
            .filter(|r| r.get::<_, Option<String>>(1).unwrap().is_none())
            .count();
        assert_eq!(
            nulls,
            617 - 5,
            "odd rows have no b, but the 5 odd ones upserted"
        );
    }
}
