//! One connection to either store, SQLite or PostgreSQL, behind one small API: run a
//! statement with arguments, get rows of plain values back. The hub's SQL is written
//! once, in the subset both engines accept; what differs is translated here, where it
//! is the same for every statement:
//! - placeholders: `?N` and `?` become PostgreSQL's `$N`;
//! - the column `user`, a reserved word in PostgreSQL, is quoted there;
//! - PostgreSQL's typed parameters take the argument converted to the type the
//!   statement gives them (an integer for an `INT4` slot, a string for `TEXT`), as
//!   SQLite's dynamic typing took them as they came.
//!
//! Both clients are blocking: the writer runs on its own thread and readers on
//! `spawn_blocking`, as with SQLite alone.
use std::{collections::HashMap, error::Error as StdError, fmt};

use anyhow::Context as _;
use bytes::BytesMut;
use rusqlite::types::{ToSqlOutput, ValueRef};
use tokio_postgres::{
    Statement,
    types::{IsNull, ToSql as PgToSql, Type, to_sql_checked},
};

use super::{
    pg_client::{PgClient, pg_error},
    pg_tls::{self, PgTls},
};

/// Which engine a connection speaks to, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value read from a row, or an owned argument built at run time (filters).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

/// An argument as bound: borrowed, so binding copies nothing.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be bound to a statement's parameter.
pub trait ToArg {
    fn arg(&self) -> Arg<'_>;
}

macro_rules! integer_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn arg(&self) -> Arg<'_> {
                Arg::Integer(i64::from(*self))
            }
        }
    )*};
}
integer_arg!(i64, i32, u32, u16, u8, bool);

impl ToArg for f64 {
    fn arg(&self) -> Arg<'_> {
        Arg::Real(*self)
    }
}

impl ToArg for str {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for [u8] {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Vec<u8> {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl<const N: usize> ToArg for [u8; N] {
    fn arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
}

impl ToArg for Value {
    fn arg(&self) -> Arg<'_> {
        match self {
            Value::Null => Arg::Null,
            Value::Integer(v) => Arg::Integer(*v),
            Value::Real(v) => Arg::Real(*v),
            Value::Text(v) => Arg::Text(v),
            Value::Blob(v) => Arg::Blob(v),
        }
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn arg(&self) -> Arg<'_> {
        (**self).arg()
    }
}

impl<T: ToArg> ToArg for Option<T> {
    fn arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Null, ToArg::arg)
    }
}

/// Values built at run time (a filter's) as arguments.
pub fn dynamic(values: &[Value]) -> Vec<&dyn ToArg> {
    values.iter().map(|v| v as &dyn ToArg).collect()
}

/// `args![a, b, c]`: a statement's arguments, of any [`ToArg`] types.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::store::db::ToArg),*][..]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Integer(v) => ValueRef::Integer(v),
            Arg::Real(v) => ValueRef::Real(v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl PgToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Integer(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Arg::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                _ => Err(format!("a real given for a {ty} parameter").into()),
            },
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Blob(v) => v.to_sql(ty, out),
        }
    }

    // Every type is accepted here and checked in `to_sql`, where the value is known.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Rows per PostgreSQL multi-row insert: large enough that round trips vanish, small
/// enough that one statement's arrays stay a few MiB.
const INSERT_CHUNK: usize = 2_000;

/// A column's type, for [`Db::insert_rows`]: PostgreSQL's arrays are typed.
#[derive(Clone, Copy, Debug)]
pub enum SqlType {
    Integer,
    Text,
    Blob,
}

impl SqlType {
    /// Its PostgreSQL type: of a COPY's columns, and (as `int8[]`, ...) of the arrays of
    /// multi-row inserts.
    fn postgres_type(self) -> Type {
        match self {
            SqlType::Integer => Type::INT8,
            SqlType::Text => Type::TEXT,
            SqlType::Blob => Type::BYTEA,
        }
    }
}

/// One column of a chunk of rows, as a PostgreSQL array.
enum Column<'a> {
    Integer(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Blob(Vec<Option<&'a [u8]>>),
}

impl<'a> Column<'a> {
    fn gather(ty: SqlType, rows: &'a [Vec<Value>], i: usize, name: &str) -> anyhow::Result<Self> {
        let cell = |row: &'a Vec<Value>| {
            row.get(i)
                .with_context(|| format!("a row without column {name}"))
        };
        let mismatch = |v: &Value| anyhow::anyhow!("{v:?} in the {ty:?} column {name}");
        Ok(match ty {
            SqlType::Integer => Column::Integer(
                rows.iter()
                    .map(|r| match cell(r)? {
                        Value::Null => Ok(None),
                        Value::Integer(v) => Ok(Some(*v)),
                        other => Err(mismatch(other)),
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
            SqlType::Text => Column::Text(
                rows.iter()
                    .map(|r| match cell(r)? {
                        Value::Null => Ok(None),
                        Value::Text(v) => Ok(Some(v.as_str())),
                        other => Err(mismatch(other)),
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
            SqlType::Blob => Column::Blob(
                rows.iter()
                    .map(|r| match cell(r)? {
                        Value::Null => Ok(None),
                        Value::Blob(v) => Ok(Some(v.as_slice())),
                        other => Err(mismatch(other)),
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        })
    }

    fn as_sql(&self) -> &(dyn PgToSql + Sync) {
        match self {
            Column::Integer(v) => v,
            Column::Text(v) => v,
            Column::Blob(v) => v,
        }
    }
}

/// One row, its values in the order of the statement's columns.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&self, index: usize) -> anyhow::Result<T> {
        let value = self
            .0
            .get(index)
            .with_context(|| format!("a row of {} columns has no column {index}", self.0.len()))?;
        T::from_value(value).with_context(|| format!("column {index}"))
    }
}

/// A Rust value read from a column.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> anyhow::Result<Self>;
}

fn wrong(value: &Value, wanted: &str) -> anyhow::Error {
    anyhow::anyhow!("{value:?} where {wanted} was expected")
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        match value {
            Value::Integer(v) => Ok(*v),
            _ => Err(wrong(value, "an integer")),
        }
    }
}

macro_rules! narrow_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> anyhow::Result<Self> {
                let wide = i64::from_value(value)?;
                <$t>::try_from(wide).with_context(|| format!("{wide} out of range"))
            }
        }
    )*};
}
narrow_from_value!(u64, u32, u16, i32);

impl FromValue for bool {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        match value {
            Value::Real(v) => Ok(*v),
            Value::Integer(v) => Ok(*v as f64),
            _ => Err(wrong(value, "a number")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(wrong(value, "text")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        match value {
            Value::Blob(v) => Ok(v.clone()),
            // SQLite keeps what it was given; a line stored as text reads back as such.
            Value::Text(v) => Ok(v.as_bytes().to_vec()),
            _ => Err(wrong(value, "bytes")),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> anyhow::Result<Self> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A connection to the store.
pub struct Db {
    engine: Engine,
}

enum Engine {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Box<PgClient>,
        /// Prepared statements by their hub SQL: PostgreSQL parses and plans a
        /// statement once per connection, as rusqlite's statement cache does.
        statements: HashMap<String, Statement>,
        /// `COPY` statements and their column types, by table (see [`Db::copy_row`]).
        copies: HashMap<&'static str, (String, Vec<Type>)>,
    },
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Db {
    pub fn sqlite(conn: rusqlite::Connection) -> Self {
        Self {
            engine: Engine::Sqlite(conn),
        }
    }

    /// Connects to PostgreSQL. Errors name the server as [`redact`] shows it, never
    /// the URL, which may hold a password.
    pub fn postgres(url: &str, tls: &PgTls) -> anyhow::Result<Self> {
        let shown = redact(url);
        let client = PgClient::connect(url, tls.connector())
            .with_context(|| format!("connecting to PostgreSQL at {shown}"))
            .map_err(pg_tls::explain)?;
        Ok(Self {
            engine: Engine::Postgres {
                client: Box::new(client),
                statements: HashMap::new(),
                copies: HashMap::new(),
            },
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.engine {
            Engine::Sqlite(_) => Dialect::Sqlite,
            Engine::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// The connection to the server is gone (PostgreSQL; never for SQLite).
    pub fn is_closed(&self) -> bool {
        match &self.engine {
            Engine::Sqlite(_) => false,
            Engine::Postgres { client, .. } => client.is_closed(),
        }
    }

    /// Runs statements without arguments (schema, transaction control).
    pub fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        match &mut self.engine {
            Engine::Sqlite(conn) => conn.execute_batch(sql)?,
            Engine::Postgres { client, .. } => client.batch_execute(sql).map_err(pg_error)?,
        }
        Ok(())
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, args: &[&dyn ToArg]) -> anyhow::Result<u64> {
        let changed = match &mut self.engine {
            Engine::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                stmt.execute(rusqlite::params_from_iter(args.iter().map(|a| a.arg())))? as u64
            }
            Engine::Postgres {
                client, statements, ..
            } => {
                let stmt = prepared(client, statements, sql)?;
                let bound = pg_args(args);
                client.execute(&stmt, &pg_refs(&bound)).map_err(pg_error)?
            }
        };
        Ok(changed)
    }

    /// Inserts `rows` into `table`, `tail` (`ON CONFLICT ...`) applying to each. SQLite
    /// takes [`SQLITE_ROWS_PER_INSERT`] rows per statement (`VALUES (...), (...)`),
    /// in process; PostgreSQL one statement per chunk of rows, each column one array
    /// (`unnest`), so a batch costs a few round trips, not one per row.
    pub fn insert_rows(
        &mut self,
        table: &str,
        columns: &[(&str, SqlType)],
        rows: &[Vec<Value>],
        tail: &str,
    ) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.dialect() {
            Dialect::Sqlite => {
                let Engine::Sqlite(conn) = &self.engine else {
                    unreachable!("the dialect is SQLite")
                };
                let (chunks, rest) = rows.as_chunks::<SQLITE_ROWS_PER_INSERT>();
                if !chunks.is_empty() {
                    let sql = sqlite_insert_many(table, columns, SQLITE_ROWS_PER_INSERT, tail);
                    let mut stmt = conn.prepare_cached(&sql)?;
                    for chunk in chunks {
                        stmt.execute(rusqlite::params_from_iter(
                            chunk.iter().flatten().map(ToArg::arg),
                        ))?;
                    }
                }
                if !rest.is_empty() {
                    let mut stmt = conn.prepare_cached(&sqlite_insert(table, columns, tail))?;
                    for row in rest {
                        stmt.execute(rusqlite::params_from_iter(row.iter().map(ToArg::arg)))?;
                    }
                }
            }
            Dialect::Postgres => {
                let names = columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
                let arrays = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| format!("?{}::{}[]", i + 1, ty.postgres_type()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql =
                    format!("INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}");
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let columns = columns
                        .iter()
                        .enumerate()
                        .map(|(i, (name, ty))| Column::gather(*ty, chunk, i, name))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let Engine::Postgres {
                        client, statements, ..
                    } = &mut self.engine
                    else {
                        unreachable!("the dialect is PostgreSQL")
                    };
                    let stmt = prepared(client, statements, &sql)?;
                    let refs: Vec<&(dyn PgToSql + Sync)> =
                        columns.iter().map(Column::as_sql).collect();
                    client.execute(&stmt, &refs).map_err(pg_error)?;
                }
            }
        }
        Ok(())
    }

    /// Sends one row into `table` through `COPY ... FROM STDIN (FORMAT binary)`
    /// (PostgreSQL), `columns` in [`Db::insert_rows`]'s form. The server reads each
    /// value in its binary form (no arrays to build and take apart, no statement to
    /// plan), and inserts while the caller prepares the next row: the COPY stays open
    /// until the next other statement, which ends it first, so a failed row fails that
    /// statement or the commit. For rows that need no `ON CONFLICT`.
    pub fn copy_row(
        &mut self,
        table: &'static str,
        columns: &[(&str, SqlType)],
        values: &[&dyn ToArg],
    ) -> anyhow::Result<()> {
        let Engine::Postgres { client, copies, .. } = &mut self.engine else {
            anyhow::bail!("copy_row is PostgreSQL's; SQLite takes rows with insert_row")
        };
        let (sql, types) = copies.entry(table).or_insert_with(|| {
            let names = columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
            (
                postgres_sql(&format!(
                    "COPY {table} ({names}) FROM STDIN (FORMAT binary)"
                )),
                columns.iter().map(|(_, ty)| ty.postgres_type()).collect(),
            )
        });
        let bound = pg_args(values);
        client
            .copy_row(sql, types, &pg_refs(&bound))
            .map_err(pg_error)?;
        Ok(())
    }

    /// Inserts one row now, its values borrowed: SQLite's way for rows that would be
    /// copied only to be bound (see [`Db::insert_rows`] for PostgreSQL's).
    /// `sql` is [`sqlite_insert`]'s, built once by the caller.
    pub fn insert_row(&mut self, sql: &str, values: &[&dyn ToArg]) -> anyhow::Result<()> {
        let Engine::Sqlite(conn) = &self.engine else {
            anyhow::bail!("insert_row is SQLite's; PostgreSQL takes rows in bulk")
        };
        let mut stmt = conn.prepare_cached(sql)?;
        stmt.execute(rusqlite::params_from_iter(values.iter().map(|a| a.arg())))?;
        Ok(())
    }

    /// Runs one query; returns its rows.
    pub fn query(&mut self, sql: &str, args: &[&dyn ToArg]) -> anyhow::Result<Vec<Row>> {
        match &mut self.engine {
            Engine::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(args.iter().map(|a| a.arg())))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..width)
                        .map(|i| row.get_ref(i).map(sqlite_value))
                        .collect::<Result<_, _>>()?;
                    out.push(Row(values));
                }
                Ok(out)
            }
            Engine::Postgres {
                client, statements, ..
            } => {
                let stmt = prepared(client, statements, sql)?;
                let bound = pg_args(args);
                let rows = client.query(&stmt, &pg_refs(&bound)).map_err(pg_error)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, args: &[&dyn ToArg]) -> anyhow::Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a query that always has one (an aggregate).
    pub fn query_row(&mut self, sql: &str, args: &[&dyn ToArg]) -> anyhow::Result<Row> {
        self.query_opt(sql, args)?
            .with_context(|| format!("no row from {}", sql.trim()))
    }

    /// Begins a transaction that holds the write lock from its start. On SQLite that is
    /// `BEGIN IMMEDIATE`: a deferred transaction that reads first fails with
    /// SQLITE_BUSY_SNAPSHOT when another connection wrote after its first read.
    pub fn begin(&mut self) -> anyhow::Result<Tx<'_>> {
        self.batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })?;
        Ok(Tx {
            db: self,
            open: true,
        })
    }
}

/// `INSERT INTO table (columns) VALUES (?1, ...) tail`.
pub fn sqlite_insert(table: &str, columns: &[(&str, SqlType)], tail: &str) -> String {
    sqlite_insert_many(table, columns, 1, tail)
}

/// Rows per SQLite statement of [`Db::insert_rows`]. Each statement's own work (its
/// cursors opened and closed, its run set up and reset) then counts once per 64 rows,
/// not once per row: a batch writes two or three rollup rows per record.
const SQLITE_ROWS_PER_INSERT: usize = 64;

/// An insert of `rows` rows into `table`, their values bound in order.
fn sqlite_insert_many(table: &str, columns: &[(&str, SqlType)], rows: usize, tail: &str) -> String {
    let names = columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ");
    let width = columns.len();
    let values = (0..rows)
        .map(|row| {
            let slots = (1..=width)
                .map(|i| format!("?{}", row * width + i))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({slots})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {table} ({names}) VALUES {values} {tail}")
}

/// A transaction: rolled back when dropped uncommitted.
pub struct Tx<'d> {
    db: &'d mut Db,
    open: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.open = false;
        self.db.batch("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        self.db
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Engine::Postgres { client, .. } = &mut self.db.engine {
                client.abort_copy();
            }
            // A failed statement may have ended the transaction already (SQLite rolls
            // back on some errors); then there is nothing to undo.
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

fn sqlite_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    }
}

fn pg_row(row: &tokio_postgres::Row) -> anyhow::Result<Row> {
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            let value = match *ty {
                Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
                Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Integer(v.into())),
                Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Integer(v.into())),
                Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Integer(v.into())),
                Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
                Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into())),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    row.try_get::<_, Option<String>>(i)?.map(Value::Text)
                }
                Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
                _ => anyhow::bail!(
                    "column {} is of type {ty}, which the hub does not read (CAST it AS BIGINT or TEXT)",
                    column.name()
                ),
            };
            Ok(value.unwrap_or(Value::Null))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Row(values))
}

fn prepared(
    client: &mut PgClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> anyhow::Result<Statement> {
    if let Some(stmt) = statements.get(sql) {
        return Ok(stmt.clone());
    }
    let translated = postgres_sql(sql);
    let stmt = client
        .prepare(&translated)
        .map_err(pg_error)
        .with_context(|| format!("preparing {}", translated.trim()))?;
    statements.insert(sql.to_owned(), stmt.clone());
    Ok(stmt)
}

fn pg_args<'a>(args: &'a [&'a dyn ToArg]) -> Vec<Arg<'a>> {
    args.iter().map(|a| a.arg()).collect()
}

fn pg_refs<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn PgToSql + Sync)> {
    args.iter().map(|a| a as &(dyn PgToSql + Sync)).collect()
}

/// A hub statement in PostgreSQL's spelling: `?N` and bare `?` become `$N`, and the
/// column `user` is quoted. Text in single quotes is left as it is.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut next_bare = 0;
    let mut in_quote = false;
    while let Some((i, c)) = chars.next() {
        if in_quote {
            in_quote = c != '\'';
            out.push(c);
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                out.push(c);
            }
            '?' => {
                let digits: String = std::iter::from_fn(|| {
                    chars.next_if(|(_, d)| d.is_ascii_digit()).map(|(_, d)| d)
                })
                .collect();
                out.push('$');
                if digits.is_empty() {
                    next_bare += 1;
                    out.push_str(&next_bare.to_string());
                } else {
                    out.push_str(&digits);
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) =
                    chars.next_if(|(_, d)| d.is_ascii_alphanumeric() || *d == '_')
                {
                    end = j + d.len_utf8();
                }
                let word = &sql[i..end];
                if word == "user" {
                    out.push_str("\"user\"");
                } else {
                    out.push_str(word);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A PostgreSQL URL or key=value string as it may be shown: user, host, port and
/// database, never the password.
pub fn redact(url: &str) -> String {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "(an unparsable connection string)".to_owned();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("(default user)"),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("(default database)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_the_user_column_are_spelled_for_postgres() {
        assert_eq!(
            postgres_sql("SELECT user, users FROM t WHERE a = ?1 AND b = ?12 AND c = 'x?user'"),
            "SELECT \"user\", users FROM t WHERE a = $1 AND b = $12 AND c = 'x?user'"
        );
        assert_eq!(postgres_sql("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    #[test]
    fn a_shown_url_has_no_password() {
        let shown = redact("postgres://tracer:s3cret-pw@127.0.0.1:5433/hub");
        assert_eq!(shown, "tracer@127.0.0.1:5433/hub");
        assert!(!redact("host=/run/pg user=a password=s3cret-pw").contains("s3cret"));
    }

    #[test]
    fn sqlite_rows_come_back_as_values() {
        let mut db = Db::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d REAL)")
            .unwrap();
        let blob = vec![1u8, 2];
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            args![7i64, "x", blob, 1.5f64],
        )
        .unwrap();
        let none: Option<i64> = None;
        db.execute("INSERT INTO t VALUES (?1, NULL, NULL, NULL)", args![none])
            .unwrap();
        let rows = db
            .query("SELECT a, b, c, d FROM t ORDER BY a", args![])
            .unwrap();
        assert_eq!(rows[0].get::<Option<i64>>(0).unwrap(), None);
        assert_eq!(rows[1].get::<u64>(0).unwrap(), 7);
        assert_eq!(rows[1].get::<String>(1).unwrap(), "x");
        assert_eq!(rows[1].get::<Vec<u8>>(2).unwrap(), blob);
        assert_eq!(rows[1].get::<f64>(3).unwrap(), 1.5);
        assert!(rows[1].get::<String>(0).is_err());
    }
}
