//! Opening the pool: bounded in time, with the failure said in words an operator can act on.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Db, Pools};
use crate::queue::QueueError;
use crate::settings::{self, Backend, DatabaseSettings};

impl Db {
    /// Opens the database named by `settings` within `database.connect_timeout`.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Db, QueueError> {
        let location = settings.url.to_string();
        let failed = |reason: String| QueueError::Connect {
            location: location.clone(),
            timeout: settings.connect_timeout,
            reason,
        };
        let pools = match settings.url.backend() {
            Backend::Postgres => Pools::Postgres(postgres(settings, &failed).await?),
            Backend::Sqlite => Pools::Sqlite(sqlite(settings, &failed).await?),
        };
        Ok(Db {
            pools,
            location: location.into(),
        })
    }
}

async fn postgres(
    settings: &DatabaseSettings,
    failed: &impl Fn(String) -> QueueError,
) -> Result<sqlx::PgPool, QueueError> {
    let options = PgConnectOptions::from_str(settings.url.as_str())
        .map_err(|e| failed(format!("the URL does not parse: {e}")))?
        .application_name("jobq");
    let connecting = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options);
    tokio::time::timeout(settings.connect_timeout, connecting)
        .await
        .map_err(|_| failed("timed out (is PostgreSQL running and reachable?)".into()))?
        .map_err(|e| failed(e.to_string()))
}

/// One file in WAL mode, `synchronous=FULL` unless configured otherwise, its directory
/// created when missing.
async fn sqlite(
    settings: &DatabaseSettings,
    failed: &impl Fn(String) -> QueueError,
) -> Result<sqlx::SqlitePool, QueueError> {
    if let Some(dir) = settings
        .url
        .sqlite_path()
        .as_deref()
        .and_then(|p| p.parent())
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    let synchronous = match settings.sqlite_synchronous {
        settings::SqliteSynchronous::Full => SqliteSynchronous::Full,
        settings::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
    };
    let options = SqliteConnectOptions::from_str(settings.url.as_str())
        .map_err(|e| failed(format!("the URL does not parse: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(settings.sqlite_busy_timeout)
        .foreign_keys(true);
    let connecting = async {
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        // A corrupt file or one locked by another program fails here, not on first use.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .fetch_one(&pool)
            .await?;
        Ok::<_, sqlx::Error>(pool)
    };
    tokio::time::timeout(settings.connect_timeout, connecting)
        .await
        .map_err(|_| failed("timed out (is the file locked by another program?)".into()))?
        .map_err(|e| failed(e.to_string()))
}
