//! One way to talk SQL to either database: the store's queries are written once, with
//! SQLite's `?N` placeholders, and run on SQLite (rusqlite) or PostgreSQL (postgres).
//!
//! The call shapes follow rusqlite's (`execute`, `query_row`, `prepare_cached`,
//! `query_map`, `optional`), so the store reads the same whichever database is under it.
//! On PostgreSQL a statement is prepared once per connection and cached by its text
//! (`--db-statements prepared`), or sent unnamed with its parameter types (`unnamed`, for
//! poolers in transaction mode that do not track prepared statements). The few statements the two dialects spell differently ask
//! [`Conn::dialect`].

use std::cell::Cell;
use std::sync::Arc;

use tokio_postgres::types::{IsNull, ToSql, Type};

use super::pg::Statements;

use crate::server::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A database error, with what the server answers for it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no row")]
    NoRows,
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The database cannot be reached (down, restarting, or every connection busy).
    #[error("{0}")]
    Unavailable(String),
    /// A connection could not be made to the database at `target` (`host:port/db`).
    /// (Its cause is in its text, not a `source`: error chains would say it twice.)
    #[error("cannot connect to PostgreSQL at {target}: {}", pg_text(.cause))]
    Connect {
        target: String,
        cause: tokio_postgres::Error,
    },
    /// The schema cannot be served by this build.
    #[error("{0}")]
    Schema(String),
    #[error("column {0}: {1}")]
    Column(String, &'static str),
}

impl DbError {
    /// Whether the error says the database is out of reach rather than the statement wrong:
    /// the answer is then 503, which every SDK retries.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Unavailable(_) | DbError::Connect { .. } => true,
            DbError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.as_db_error() {
                    // admin_shutdown, crash_shutdown, cannot_connect_now, connection failures;
                    // and how PgBouncer says it cannot reach the database (08P01, FATAL).
                    Some(d) => {
                        matches!(
                            d.code().code(),
                            "57P01" | "57P02" | "57P03" | "08000" | "08001" | "08003" | "08006"
                        ) || pgbouncer_waiting(d)
                    }
                    None => {
                        use std::error::Error as _;
                        e.source().is_some_and(|s| s.is::<std::io::Error>())
                            || e.to_string().starts_with("error connecting")
                            || e.to_string().contains("timed out")
                    }
                }
            }
            _ => false,
        }
    }
}

impl DbError {
    /// Whether a row was refused for a key a unique index holds already.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            DbError::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    /// Whether the database answered a connection and refused it for good (a wrong
    /// password, an unknown database or role): waiting will not help, unlike a database
    /// that is down, starting up or out of connection slots.
    /// So is a connection the client refuses: the server's certificate (an unknown
    /// authority, another name), a server without TLS under `sslmode=require` or stricter,
    /// or a setting missing (no password to give).
    pub fn is_refused(&self) -> bool {
        let DbError::Connect { cause, .. } = self else {
            return false;
        };
        if let Some(d) = cause.as_db_error() {
            // cannot_connect_now, too_many_connections, configuration_limit_exceeded, and
            // PgBouncer's own waiting for the database pass by waiting; PgBouncer's other
            // refusals (no such database, a wrong password) do not.
            return !matches!(d.code().code(), "57P03" | "53300" | "53400")
                && !pgbouncer_waiting(d);
        }
        let text = pg_text(cause);
        // A certificate out of its dates may be renewed meanwhile: waiting may cure it.
        let dated = ["Expired", "NotValidYet", "expired", "not valid yet"]
            .iter()
            .any(|w| text.contains(w));
        text.starts_with("invalid configuration")
            || text.contains("server does not support TLS")
            || (text.contains("certificate") && !dated)
    }
}

/// Whether PgBouncer says it cannot reach the database for now: its FATAL 08P01 with one of
/// its waiting texts (`query_wait_timeout`, `server_login_retry`, its pool full). PostgreSQL's
/// own 08P01 (a protocol error, an ERROR) is not: it is a fault to report, not to wait out.
fn pgbouncer_waiting(d: &tokio_postgres::error::DbError) -> bool {
    d.code().code() == "08P01"
        && d.severity() == "FATAL"
        && [
            "query_wait_timeout",
            "server login has been failing",
            "no more connections allowed",
            "pgbouncer cannot connect to server",
            "server conn crashed",
        ]
        .iter()
        .any(|t| d.message().contains(t))
}

/// A PostgreSQL error as one line. The server's own error gives its message and SQLSTATE
/// (a wrong password, or a role refused, said as such: the client's text for either is
/// only `db error`); the client's gives its chain of causes. Neither holds a password:
/// PostgreSQL never sends one back, and the client's parse errors name options only.
pub fn pg_text(e: &tokio_postgres::Error) -> String {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let what = if *code == SqlState::INVALID_PASSWORD {
            "wrong password or user: "
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            "not allowed to connect: "
        } else {
            ""
        };
        let mut text = format!("{what}{} (SQLSTATE {})", db.message(), code.code());
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        // A statement prepared on one server connection and used on another: a pooler in
        // transaction mode between (PgBouncer before 1.21 keeps no prepared statements).
        if *code == SqlState::DUPLICATE_PSTATEMENT
            || *code == SqlState::UNDEFINED_PSTATEMENT
            || (*code == SqlState::PROTOCOL_VIOLATION && db.message().starts_with("bind message"))
        {
            text.push_str("; is a pooler in transaction mode in front of the database? Run with --db-statements unnamed, or give PgBouncer 1.21 or later max_prepared_statements");
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            static LOGGED: std::sync::Mutex<Throttle> = std::sync::Mutex::new(Throttle::new());
            let now = std::time::Instant::now();
            let due = LOGGED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .tick(now, Throttle::EVERY);
            if let Some(requests) = due {
                tracing::warn!(error = %e, requests, "the database is unavailable: answering 503");
            }
            return ApiError::unavailable();
        }
        if let DbError::Postgres(p) = &e {
            use tokio_postgres::error::SqlState;
            // What the request carried, not the server: a NUL character where a field is
            // stored as text (PostgreSQL refuses it; SQLite keeps it).
            if p.code() == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) {
                return ApiError::bad_request(
                    "a value holds a NUL character (U+0000), which this server's database (PostgreSQL) cannot store",
                );
            }
        }
        ApiError::internal(&e)
    }
}

/// A line logged at most once every [`Throttle::EVERY`], with how many times it was due:
/// a database down under load makes every request fail the same way, and one line a
/// request would bury the log.
pub struct Throttle {
    last: Option<std::time::Instant>,
    due: u64,
}

impl Throttle {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub const fn new() -> Self {
        Self { last: None, due: 0 }
    }

    /// Counts one occurrence at `now`; `Some(n)` when a line is to be logged now, `n`
    /// counting this one and those not logged since the last line.
    pub fn tick(&mut self, now: std::time::Instant, every: std::time::Duration) -> Option<u64> {
        self.due += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.due))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// The type of a parameter, which PostgreSQL is told with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Text,
}

/// A parameter as it is bound.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null(Ty),
    Int(i64),
    Text(&'a str),
    /// A PostgreSQL `text[]` (a column of a batch's rows, for `unnest` or `= ANY`); SQLite
    /// has no arrays and refuses it.
    Texts(&'a [Option<&'a str>]),
}

/// What can be bound to a placeholder.
pub trait Param {
    fn arg(&self) -> Arg<'_>;
}

/// A parameter type that can also be absent (`Option<T>` binds NULL of `T`'s type).
pub trait Typed: Param {
    const TY: Ty;
}

impl Param for str {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}
impl Typed for str {
    const TY: Ty = Ty::Text;
}
impl Param for String {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}
impl Typed for String {
    const TY: Ty = Ty::Text;
}
impl Param for std::borrow::Cow<'_, str> {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}
impl Typed for std::borrow::Cow<'_, str> {
    const TY: Ty = Ty::Text;
}
macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn arg(&self) -> Arg<'_> {
                Arg::Int(*self as i64)
            }
        }
        impl Typed for $t {
            const TY: Ty = Ty::Int;
        }
    )*};
}
int_param!(i64, i32, u32, usize);
impl<T: Param + ?Sized> Param for &T {
    fn arg(&self) -> Arg<'_> {
        (**self).arg()
    }
}
impl<T: Typed + ?Sized> Typed for &T {
    const TY: Ty = T::TY;
}
impl<T: Typed> Param for Option<T> {
    fn arg(&self) -> Arg<'_> {
        match self {
            Some(v) => v.arg(),
            None => Arg::Null(T::TY),
        }
    }
}

/// The parameters of a statement: `params![a, b]`, an array of one type, or `[]`.
pub trait Params {
    fn with<R>(&self, f: impl FnOnce(&[&dyn Param]) -> R) -> R;
}
impl Params for &[&dyn Param] {
    fn with<R>(&self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        f(self)
    }
}
impl<T: Param, const N: usize> Params for [T; N] {
    fn with<R>(&self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        let refs: [&dyn Param; N] = self.each_ref().map(|x| x as &dyn Param);
        f(&refs)
    }
}

/// `params![a, b, c]`: parameters of different types.
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::server::store::sql::Param),*] as &[&dyn $crate::server::store::sql::Param]
    };
}
pub(crate) use params;

/// One result row, its values by position (or by column name).
#[derive(Debug)]
pub struct Row {
    names: Arc<[String]>,
    vals: Vec<Val>,
}

pub trait RowIndex {
    fn index(&self, row: &Row) -> Result<usize, DbError>;
}
impl RowIndex for usize {
    fn index(&self, row: &Row) -> Result<usize, DbError> {
        (*self < row.vals.len())
            .then_some(*self)
            .ok_or_else(|| DbError::Column(self.to_string(), "no such column"))
    }
}
impl RowIndex for &str {
    fn index(&self, row: &Row) -> Result<usize, DbError> {
        row.names
            .iter()
            .position(|n| n == self)
            .ok_or_else(|| DbError::Column(self.to_string(), "no such column"))
    }
}

/// A Rust value read from a column.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Result<Self, &'static str>;
}
impl FromVal for String {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        match v {
            Val::Text(s) => Ok(s.clone()),
            Val::Int(i) => Ok(i.to_string()),
            _ => Err("expected text"),
        }
    }
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        match v {
            Val::Int(i) => Ok(*i),
            _ => Err("expected an integer"),
        }
    }
}
impl FromVal for i32 {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        i32::try_from(i64::from_val(v)?).map_err(|_| "integer out of range")
    }
}
impl FromVal for f64 {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        match v {
            Val::Real(f) => Ok(*f),
            Val::Int(i) => Ok(*i as f64),
            _ => Err("expected a number"),
        }
    }
}
impl FromVal for Val {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        Ok(v.clone())
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Result<Self, &'static str> {
        match v {
            Val::Null => Ok(None),
            v => T::from_val(v).map(Some),
        }
    }
}

impl Row {
    pub fn get<I: RowIndex, T: FromVal>(&self, i: I) -> Result<T, DbError> {
        let at = i.index(self)?;
        T::from_val(&self.vals[at]).map_err(|what| DbError::Column(self.names[at].clone(), what))
    }

    pub fn values(&self) -> &[Val] {
        &self.vals
    }
}

/// What a statement gave back.
#[derive(Debug, Default)]
pub struct Output {
    pub rows: Vec<Row>,
    pub affected: u64,
}

/// A connection, or a transaction on one.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Runs one statement written with `?N` placeholders.
    fn run(&self, sql: &str, params: &[&dyn Param]) -> Result<Output, DbError>;
    /// Whether this is a transaction that writes (row locks are then taken where needed).
    fn writing(&self) -> bool;
    /// Runs statements without parameters, `;`-separated (migrations).
    fn batch(&self, sql: &str) -> Result<(), DbError>;
    /// Writes rows by `copy` (`COPY t (columns) FROM STDIN (FORMAT binary)`): `values` is
    /// the rows one after another, `width` values each, each value of its column's type.
    /// PostgreSQL's only: SQLite refuses it. How many rows were written.
    fn copy_in(&self, copy: &str, width: usize, values: &[Arg<'_>]) -> Result<u64, DbError>;
}

/// The names the store uses for a connection and a transaction (both are a [`Conn`]).
pub type Connection<'a> = dyn Conn + 'a;
pub type Tx<'a> = dyn Conn + 'a;

/// A statement to run, in rusqlite's shape.
pub struct Stmt<'c, 'a> {
    conn: &'c (dyn Conn + 'a),
    sql: String,
}

impl Stmt<'_, '_> {
    pub fn execute<P: Params>(&self, params: P) -> Result<usize, DbError> {
        self.conn.execute(&self.sql, params)
    }
    pub fn query_row<P: Params, T>(
        &self,
        params: P,
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.conn.query_row(&self.sql, params, f)
    }
    pub fn query_map<P: Params, T>(
        &self,
        params: P,
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError> {
        let out = params.with(|p| self.conn.run(&self.sql, p))?;
        Ok(out.rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }
}

impl<'a> dyn Conn + 'a {
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize, DbError> {
        Ok(params.with(|p| self.run(sql, p))?.affected as usize)
    }

    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let out = params.with(|p| self.run(sql, p))?;
        match out.rows.first() {
            Some(r) => f(r),
            None => Err(DbError::NoRows),
        }
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_, 'a>, DbError> {
        Ok(Stmt {
            conn: self,
            sql: sql.to_string(),
        })
    }

    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_, 'a>, DbError> {
        self.prepare_cached(sql)
    }

    /// `" FOR UPDATE"` in a PostgreSQL write transaction (where another replica's
    /// transaction may hold the row), and nothing on SQLite (whose writes are one at a time).
    pub fn for_update(&self) -> &'static str {
        if self.writing() && self.dialect() == Dialect::Postgres {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    /// `" FOR SHARE"` likewise: the row cannot be deleted before this transaction ends.
    pub fn for_share(&self) -> &'static str {
        if self.writing() && self.dialect() == Dialect::Postgres {
            " FOR SHARE"
        } else {
            ""
        }
    }

    /// Serializes, on PostgreSQL, the write transactions that name the same `key` until they
    /// end (a transaction-level advisory lock, which PgBouncer's transaction mode keeps).
    pub fn serialize_on(&self, key: &str) -> Result<(), DbError> {
        if self.dialect() == Dialect::Postgres {
            self.run(
                "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))::text",
                params![key],
            )?;
        }
        Ok(())
    }
}

/// `.optional()` on a single-row result, as rusqlite spells it.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}
impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

/// A SQLite connection (or a transaction, which derefs to one).
pub struct Lite<'a> {
    pub conn: &'a rusqlite::Connection,
    pub writing: bool,
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null(_) => ValueRef::Null,
            Arg::Int(i) => ValueRef::Integer(*i),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Texts(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite has no arrays: a text[] parameter is PostgreSQL's only".into(),
                ))
            }
        }))
    }
}

impl Conn for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn writing(&self) -> bool {
        self.writing
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn copy_in(&self, _: &str, _: usize, _: &[Arg<'_>]) -> Result<u64, DbError> {
        Err(DbError::Schema(
            "COPY is PostgreSQL's: SQLite writes rows by INSERT".into(),
        ))
    }

    fn run(&self, sql: &str, params: &[&dyn Param]) -> Result<Output, DbError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.conn.prepare_cached(sql)?;
        for (i, p) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, p.arg())?;
        }
        let columns = stmt.column_count();
        if columns == 0 {
            let affected = stmt.raw_execute()? as u64;
            return Ok(Output {
                rows: Vec::new(),
                affected,
            });
        }
        let names: Arc<[String]> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        let mut cursor = stmt.raw_query();
        while let Some(r) = cursor.next()? {
            let mut vals = Vec::with_capacity(columns);
            for i in 0..columns {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(n) => Val::Int(n),
                    ValueRef::Real(f) => Val::Real(f),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Val::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            rows.push(Row {
                names: names.clone(),
                vals,
            });
        }
        let affected = rows.len() as u64;
        Ok(Output { rows, affected })
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// A PostgreSQL connection taken from the pool, inside a transaction: a write's `BEGIN`
/// was sent before; a read's is sent with its first statement (one round trip for both).
pub struct Pg<'a> {
    pub conn: &'a super::pg::Pooled<'a>,
    pub writing: bool,
    /// The statements that open the transaction, not sent yet.
    pub opening: Cell<Option<&'a str>>,
}

#[derive(Debug)]
struct PgArg<'a>(Arg<'a>);

impl ToSql for PgArg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Arg::Null(_) => Ok(IsNull::Yes),
            Arg::Int(i) => i.to_sql(ty, out),
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Texts(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// `?N` placeholders as `$N`, outside quoted strings and identifiers.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

fn pg_val(row: &tokio_postgres::Row, i: usize) -> Result<Val, DbError> {
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Val::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Val::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Val::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Val::Int(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Val::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| Val::Real(v.into())),
        Type::OID => row
            .try_get::<_, Option<u32>>(i)?
            .map(|v| Val::Int(v.into())),
        _ => row.try_get::<_, Option<String>>(i)?.map(Val::Text),
    };
    Ok(v.unwrap_or(Val::Null))
}

/// The statement's parameters as PostgreSQL is sent them, each with its type.
fn pg_args<'p>(params: &[&'p dyn Param]) -> Vec<(PgArg<'p>, Type)> {
    params
        .iter()
        .map(|p| {
            let p: &'p dyn Param = *p;
            let a = p.arg();
            (PgArg(a), pg_type(&a))
        })
        .collect()
}

/// `values` (rows of `width` values) in `COPY`'s binary format: its signature, flags and
/// header extension, then each row as its field count and each field as its length and
/// bytes (`-1`, no bytes: NULL), a text as UTF-8 and an integer as 8 bytes, big-endian (the
/// columns' `BIGINT`); `-1` to end.
fn copy_binary(width: usize, values: &[Arg<'_>]) -> Result<bytes::Bytes, DbError> {
    use bytes::BufMut as _;
    let fields =
        i16::try_from(width).map_err(|_| DbError::Column("copy".into(), "too many columns"))?;
    let size: usize = values
        .iter()
        .map(|a| 4 + if let Arg::Text(s) = a { s.len() } else { 8 })
        .sum();
    let mut out = bytes::BytesMut::with_capacity(19 + size + 2 * values.len() / width.max(1) + 2);
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
    for row in values.chunks(width.max(1)) {
        out.put_i16(fields);
        for a in row {
            match a {
                Arg::Null(_) => out.put_i32(-1),
                Arg::Int(i) => {
                    out.put_i32(8);
                    out.put_i64(*i);
                }
                Arg::Text(s) => {
                    let len = i32::try_from(s.len())
                        .map_err(|_| DbError::Column("copy".into(), "a value over 2 GB"))?;
                    out.put_i32(len);
                    out.put_slice(s.as_bytes());
                }
                Arg::Texts(_) => {
                    return Err(DbError::Column(
                        "copy".into(),
                        "expected a text or an integer",
                    ))
                }
            }
        }
    }
    out.put_i16(-1);
    Ok(out.freeze())
}

/// The PostgreSQL type a parameter is sent as.
fn pg_type(a: &Arg<'_>) -> Type {
    match a {
        Arg::Int(_) | Arg::Null(Ty::Int) => Type::INT8,
        Arg::Text(_) | Arg::Null(Ty::Text) => Type::TEXT,
        Arg::Texts(_) => Type::TEXT_ARRAY,
    }
}

/// Runs one statement written with `?N` placeholders on a pooled connection, from an async
/// task: a read of one statement, which sees one snapshot without a transaction around it
/// (a transaction's `BEGIN`, `SET LOCAL` and `COMMIT` cost the database three times the
/// statement's own work). Past the statement timeout, the database is asked to cancel it,
/// as `statement_timeout` would; the statement then fails as it would have.
pub fn pg_read_one<'a>(
    conn: &'a super::pg::Pooled<'a>,
    sql: &str,
    params: &[&'a dyn Param],
) -> impl std::future::Future<Output = Result<Output, DbError>> + Send + 'a {
    let (sql, args) = (to_postgres(sql), pg_args(params));
    async move {
        let query = pg_query(conn, &sql, &args);
        futures_util::pin_mut!(query);
        match tokio::time::timeout(conn.statement_timeout(), query.as_mut()).await {
            Ok(out) => out,
            Err(_) => {
                conn.cancel().await;
                query.await
            }
        }
    }
}

/// One write transaction of a single statement, sent at once: its opening (`BEGIN`, the
/// statement timeout), the statement and `COMMIT` go out together and are answered in one
/// round trip, so a row the statement locks is held only while the server runs it and
/// flushes the commit. For a statement that does all its work itself (a write whose
/// checks are in its `WHERE`): if it fails, the server turns the `COMMIT` into a rollback.
///
/// The outer error is the opening's, when it failed (so the server ran nothing after it);
/// the inner result is the statement's and the commit's.
pub fn pg_write_at_once<'a>(
    conn: &'a super::pg::Pooled<'a>,
    opening: &'a str,
    sql: &str,
    params: &[&'a dyn Param],
) -> impl std::future::Future<Output = Result<Result<Output, DbError>, DbError>> + Send + 'a {
    let (sql, args) = (to_postgres(sql), pg_args(params));
    async move {
        // Prepared first (once per connection: later a lookup), so that the three go out
        // in order on the first poll below.
        let ready = match pg_prepare(conn, &sql, &args).await {
            Ok(ready) => ready,
            Err(e) => return Err(e),
        };
        let client = conn.client();
        let (opened, out, committed) = futures_util::future::join3(
            client.batch_execute(opening),
            pg_send(conn, &ready, &args),
            client.batch_execute("COMMIT"),
        )
        .await;
        opened?;
        Ok(out.and_then(|out| committed.map(|()| out).map_err(DbError::from)))
    }
}

/// A statement ready to be sent: prepared (and cached per connection), or its text, sent
/// unnamed with its parameters' types.
enum Ready<'s> {
    Prepared(tokio_postgres::Statement),
    Unnamed(&'s str),
}

async fn pg_prepare<'s>(
    conn: &super::pg::Pooled<'_>,
    sql: &'s str,
    args: &[(PgArg<'_>, Type)],
) -> Result<Ready<'s>, DbError> {
    Ok(match conn.statements() {
        Statements::Prepared => {
            let types: Vec<Type> = args.iter().map(|(_, t)| t.clone()).collect();
            Ready::Prepared(conn.client().prepare_typed_cached(sql, &types).await?)
        }
        Statements::Unnamed => Ready::Unnamed(sql),
    })
}

/// Runs one statement, prepared and cached by its text or sent unnamed with its types.
async fn pg_query(
    conn: &super::pg::Pooled<'_>,
    sql: &str,
    args: &[(PgArg<'_>, Type)],
) -> Result<Output, DbError> {
    let ready = pg_prepare(conn, sql, args).await?;
    pg_send(conn, &ready, args).await
}

/// Sends a ready statement (on the first poll: statements polled in turn go out in turn)
/// and reads its rows.
async fn pg_send(
    conn: &super::pg::Pooled<'_>,
    ready: &Ready<'_>,
    args: &[(PgArg<'_>, Type)],
) -> Result<Output, DbError> {
    use futures_util::TryStreamExt as _;
    let client = conn.client();
    let stream = match ready {
        Ready::Prepared(statement) => {
            client
                .query_raw(statement, args.iter().map(|(a, _)| a))
                .await?
        }
        Ready::Unnamed(sql) => {
            client
                .query_typed_raw(sql, args.iter().map(|(a, t)| (a, t.clone())))
                .await?
        }
    };
    futures_util::pin_mut!(stream);
    let mut rows = Vec::new();
    let mut names: Option<Arc<[String]>> = None;
    while let Some(r) = stream.try_next().await? {
        let names = names
            .get_or_insert_with(|| r.columns().iter().map(|c| c.name().to_string()).collect())
            .clone();
        let vals = (0..r.len())
            .map(|i| pg_val(&r, i))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(Row { names, vals });
    }
    let affected = stream.rows_affected().unwrap_or(rows.len() as u64);
    Ok(Output { rows, affected })
}

impl Conn for Pg<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn writing(&self) -> bool {
        self.writing
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        let text = match self.opening.take() {
            Some(opening) => format!("{opening}; {sql}"),
            None => sql.to_string(),
        };
        Ok(self
            .conn
            .block_on(self.conn.client().batch_execute(&text))?)
    }

    fn copy_in(&self, copy: &str, width: usize, values: &[Arg<'_>]) -> Result<u64, DbError> {
        use futures_util::SinkExt as _;
        if values.is_empty() {
            return Ok(0);
        }
        // All the rows in one message: the driver hands a COPY's data to the connection's
        // task one message at a time, so rows sent in small pieces would each wait for it.
        let data = copy_binary(width, values)?;
        let opening = self.opening.take();
        let client = self.conn.client();
        self.conn.block_on(async {
            if let Some(opening) = opening {
                client.batch_execute(opening).await?;
            }
            let sink = client.copy_in::<_, bytes::Bytes>(copy).await?;
            futures_util::pin_mut!(sink);
            sink.send(data).await?;
            Ok(sink.finish().await?)
        })
    }

    fn run(&self, sql: &str, params: &[&dyn Param]) -> Result<Output, DbError> {
        let (sql, args) = (to_postgres(sql), pg_args(params));
        let opening = self.opening.take();
        let out = self.conn.block_on(async {
            match opening {
                // Sent first, answered before the statement: one round trip for both.
                Some(opening) => {
                    let (opened, out) = futures_util::future::join(
                        self.conn.client().batch_execute(opening),
                        pg_query(self.conn, &sql, &args),
                    )
                    .await;
                    opened.map_err(DbError::from).and(out)
                }
                None => pg_query(self.conn, &sql, &args).await,
            }
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first occurrence is logged, the next ones within the interval are counted into
    /// the next line.
    #[test]
    fn a_repeated_line_is_logged_once_an_interval_with_its_count() {
        let start = std::time::Instant::now();
        let every = std::time::Duration::from_secs(10);
        let at = |s: u64| start + std::time::Duration::from_secs(s);
        let mut t = Throttle::new();
        assert_eq!(t.tick(at(0), every), Some(1));
        assert_eq!(t.tick(at(1), every), None);
        assert_eq!(t.tick(at(9), every), None);
        assert_eq!(t.tick(at(10), every), Some(3));
        assert_eq!(t.tick(at(11), every), None);
        assert_eq!(t.tick(at(30), every), Some(2));
    }

    /// COPY's binary format, byte for byte: the header, each row's field count, a NULL as
    /// length -1, an integer as 8 bytes, a text as its UTF-8, and the trailer.
    #[test]
    fn rows_are_encoded_in_copys_binary_format() {
        let values = [
            Arg::Text("é"),
            Arg::Int(7),
            Arg::Null(Ty::Text),
            Arg::Int(-1),
        ];
        let data = copy_binary(2, &values).unwrap();
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([
            0, 2, 0, 0, 0, 2, 0xc3, 0xa9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7,
        ]);
        want.extend([0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 8]);
        want.extend([0xff; 8]);
        want.extend([0xff, 0xff]);
        assert_eq!(&data[..], &want[..]);
        let nested = [Arg::Texts(&[])];
        assert!(copy_binary(1, &nested).is_err());
    }

    #[test]
    fn placeholders_are_renumbered_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
    }
}
