//! Connections of either backend, and where an operation runs.

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::{Db, DbError};

/// A connection of either backend, borrowed for one operation.
pub enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// The same connection for a shorter borrow, so one `Conn` serves several operations.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(c) => Conn::Postgres(c),
            Conn::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A connection taken from the pool, returned to it when dropped.
pub enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(c) => Conn::Postgres(c),
            Pooled::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A transaction of either backend: rolled back when dropped without [`Tx::commit`].
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
        }
    }

    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await?,
            Tx::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// Where an operation runs: on the pool (a connection acquired for it), or on a connection
/// the caller holds (inside its transaction).
pub enum Exec<'c> {
    Pool(Db),
    Conn(Conn<'c>),
}

/// The connection an operation runs on, held for its duration.
pub enum Held<'h> {
    Pooled(Pooled),
    Borrowed(Conn<'h>),
}

impl Held<'_> {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Held::Pooled(pooled) => pooled.conn(),
            Held::Borrowed(conn) => conn.reborrow(),
        }
    }
}

impl<'c> Exec<'c> {
    /// The connection to run on: acquired from the pool, or the caller's.
    pub async fn hold<'h>(exec: &'h mut Exec<'c>) -> Result<Held<'h>, DbError> {
        Ok(match exec {
            Exec::Pool(db) => Held::Pooled(db.acquire().await?),
            Exec::Conn(conn) => Held::Borrowed(conn.reborrow()),
        })
    }

    /// The same place for a shorter borrow, so one `Exec` serves several operations.
    pub fn reborrow(&mut self) -> Exec<'_> {
        match self {
            Exec::Pool(db) => Exec::Pool(db.clone()),
            Exec::Conn(conn) => Exec::Conn(conn.reborrow()),
        }
    }
}

impl<'c> From<Conn<'c>> for Exec<'c> {
    fn from(conn: Conn<'c>) -> Self {
        Exec::Conn(conn)
    }
}

impl<'c> From<&'c mut Tx> for Exec<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        Exec::Conn(tx.conn())
    }
}

impl<'c> From<&'c mut Pooled> for Exec<'c> {
    fn from(pooled: &'c mut Pooled) -> Self {
        Exec::Conn(pooled.conn())
    }
}

impl From<&Db> for Exec<'static> {
    fn from(db: &Db) -> Self {
        Exec::Pool(db.clone())
    }
}
