//! One PostgreSQL connection for the store's blocking threads: tokio-postgres on a
//! runtime of its own whose worker drives the connection all the time. The `postgres`
//! crate's blocking client drives its connection only inside each call, so a COPY sent
//! row by row stalled between calls; here rows stream into an open COPY while the
//! writer prepares the next ones, and the server inserts them meanwhile.
use std::{future::Future, pin::Pin, time::Duration};

use tokio::{runtime::Runtime, task::JoinHandle};
use tokio_postgres::{
    Client, Error, Row, Statement,
    binary_copy::BinaryCopyInWriter,
    types::{ToSql, Type},
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long closing waits for the server to be told goodbye.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub struct PgClient {
    // Dropped first: an unfinished COPY is reported failed to the server, never ended
    // as if complete.
    copy: Option<OpenCopy>,
    conn: Option<Conn>,
}

struct Conn {
    client: Client,
    /// The task driving the connection; it ends once the client is dropped.
    driver: JoinHandle<()>,
    runtime: Runtime,
}

/// A `COPY ... FROM STDIN (FORMAT binary)` in progress.
struct OpenCopy {
    /// Its statement: more rows for the same table and columns continue it.
    sql: String,
    writer: Pin<Box<BinaryCopyInWriter>>,
}

impl PgClient {
    pub fn connect(url: &str, tls: MakeRustlsConnect) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pg-connection")
            .enable_all()
            .build()?;
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(url, tls))
            .map_err(pg_error)?;
        // A connection that fails ends this task; the next call then finds the client
        // closed and says why.
        let driver = runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            copy: None,
            conn: Some(Conn {
                client,
                driver,
                runtime,
            }),
        })
    }

    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("the connection is taken only when dropped")
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.conn().runtime.block_on(future)
    }

    pub fn is_closed(&self) -> bool {
        self.conn().client.is_closed()
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.end_copy()?;
        self.block_on(self.conn().client.batch_execute(sql))
    }

    pub fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        self.end_copy()?;
        self.block_on(self.conn().client.prepare(sql))
    }

    pub fn execute(
        &mut self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.end_copy()?;
        self.block_on(self.conn().client.execute(stmt, params))
    }

    pub fn query(
        &mut self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.end_copy()?;
        self.block_on(self.conn().client.query(stmt, params))
    }

    /// Sends one row into the COPY of `sql` (a `COPY ... FROM STDIN (FORMAT binary)`
    /// whose columns have `types`), opening it first unless it is open. The COPY ends
    /// at the next other statement, or [`PgClient::end_copy`].
    pub fn copy_row(
        &mut self,
        sql: &str,
        types: &[Type],
        values: &[&(dyn ToSql + Sync)],
    ) -> Result<(), Error> {
        if self.copy.as_ref().is_some_and(|open| open.sql != sql) {
            self.end_copy()?;
        }
        let Self { copy, conn } = self;
        let conn = conn
            .as_ref()
            .expect("the connection is taken only when dropped");
        let open = match copy {
            Some(open) => open,
            None => {
                let sink = conn.runtime.block_on(conn.client.copy_in(sql))?;
                copy.insert(OpenCopy {
                    sql: sql.to_owned(),
                    writer: Box::pin(BinaryCopyInWriter::new(sink, types)),
                })
            }
        };
        conn.runtime.block_on(open.writer.as_mut().write(values))
    }

    /// Completes the open COPY, if any: its rows are in once this returns.
    pub fn end_copy(&mut self) -> Result<(), Error> {
        match self.copy.take() {
            Some(mut open) => self.block_on(open.writer.as_mut().finish()).map(|_rows| ()),
            None => Ok(()),
        }
    }

    /// Abandons the open COPY, if any: the server is told it failed, and the
    /// transaction around it can only roll back.
    pub fn abort_copy(&mut self) {
        self.copy = None;
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.copy = None;
        let Some(Conn {
            client,
            driver,
            runtime,
        }) = self.conn.take()
        else {
            return;
        };
        // Without the client the connection says goodbye to the server and its task
        // ends. A runtime cannot be waited on or dropped inside another one's async
        // context (a store dropped by `serve`): there it closes on a thread of its own.
        let close = move || {
            drop(client);
            // The timer is made inside the runtime, which it needs.
            let _ = runtime.block_on(async { tokio::time::timeout(CLOSE_WAIT, driver).await });
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("pg-close".to_owned())
                .spawn(close);
        } else {
            close();
        }
    }
}

/// The server's own words: `tokio_postgres::Error` shows only "db error" for them.
pub fn pg_error(e: Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => {
            let words = format!(
                "PostgreSQL: {}: {}{}",
                db.severity(),
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            );
            // Data exceptions, integrity constraint violations, program limits.
            if ["22", "23", "54"].contains(&&db.code().code()[..2]) {
                anyhow::Error::new(Refused(words))
            } else {
                anyhow::anyhow!(words)
            }
        }
        None => anyhow::Error::new(e),
    }
}

/// A statement the server refused for a value it was given, not for its own state:
/// given the same values again, it refuses again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);
