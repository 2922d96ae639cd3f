//! The database layer: the one place that knows there are two databases.
//!
//! - [`Db`]: the handle over the process's pool (PostgreSQL or SQLite), cheap to clone;
//!   [`Db::connect`] opens it within the configured time, [`Db::begin`] starts a transaction
//!   (`BEGIN IMMEDIATE` on SQLite, so a writer waits for the lock instead of failing to
//!   upgrade a read lock later).
//! - [`Conn`]: a connection of either backend, borrowed from a pooled connection ([`Pooled`]),
//!   a transaction ([`Tx`]) or a caller's job transaction; [`Exec`]: where an operation runs
//!   (the pool, or a connection the caller holds), so every repository operation also works
//!   inside a caller's transaction.
//! - [`on_conn!`]: one SQL text for both backends. Placeholders are `$N` (SQLite reads them as
//!   numbered parameters), times are [`Stamp`]s (TIMESTAMPTZ on PostgreSQL, INTEGER
//!   microseconds on SQLite), and `now` is bound, never the database's `now()`. Where the
//!   dialects truly differ, a statement has two texts side by side, each with a note saying why.
//! - [`DbError`]: the layer's one error, and [`Fields`]: reading a row so that a value that does
//!   not decode names its table, row and column.
//! - [`driver`]: the queue's own statements, one file per dialect where they differ.

mod conn;
mod connect;
pub mod driver;
mod error;
mod time;

pub use conn::{Conn, Exec, Held, Pooled, Tx};
pub use error::{DbError, Fields, row_id};
pub use time::Stamp;

use crate::settings::Backend;
use sqlx::{PgPool, SqlitePool};

/// The process's database: a pool of one backend. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
    /// Where the data is, with any password masked, for messages.
    location: std::sync::Arc<str>,
}

#[derive(Clone)]
enum Pools {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Postgres(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Where the data is, with any password masked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A connection from the pool, held until dropped.
    pub async fn acquire(&self) -> Result<Pooled, DbError> {
        Ok(match &self.pools {
            Pools::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
            Pools::Sqlite(pool) => Pooled::Sqlite(pool.acquire().await?),
        })
    }

    /// A transaction: `BEGIN IMMEDIATE` on SQLite (every transaction here writes, and a
    /// deferred one could fail to upgrade to the write lock instead of waiting for it).
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match &self.pools {
            Pools::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Pools::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Operations on this database's pool.
    pub fn exec(&self) -> Exec<'static> {
        Exec::Pool(self.clone())
    }

    /// The PostgreSQL pool, for tools and tests that keep tables of their own beside the
    /// queue's (the benchmark's schemas, a test's effects table).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(pool) => Some(pool),
            Pools::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, likewise.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pools {
            Pools::Sqlite(pool) => Some(pool),
            Pools::Postgres(_) => None,
        }
    }
}

/// Runs `$body` on the connection `$c` of whichever backend `$exec` (an [`Exec`], taken by
/// value) is on: the body is one text, type-checked once for each database. From a pool, a
/// connection is acquired first; its error goes through `?` like the body's own.
#[macro_export]
#[doc(hidden)]
macro_rules! __on_conn {
    ($exec:expr, |$c:ident| $body:expr) => {{
        let mut exec: $crate::db::Exec<'_> = $exec;
        let mut held = $crate::db::Exec::hold(&mut exec).await?;
        match held.conn() {
            $crate::db::Conn::Postgres($c) => $body,
            $crate::db::Conn::Sqlite($c) => $body,
        }
    }};
}
pub use crate::__on_conn as on_conn;

/// A duration in microseconds for binding (saturating: no lease or delay is that long).
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
