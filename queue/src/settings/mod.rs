//! The engine's own settings: where the database is and how to reach it, and the shape of a
//! configuration problem. The program's settings file embeds these beside the sections of
//! everything around the engine, and loads them.

mod database_url;
mod error;

use std::time::Duration;

use serde::Deserialize;

pub use database_url::{ALLOWED_SCHEMES, Backend, DatabaseUrl, mask_url};
pub use error::{ConfigError, ConfigProblem};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    pub max_connections: u32,
    pub sqlite_synchronous: SqliteSynchronous,
    #[serde(with = "humantime_serde")]
    pub sqlite_busy_timeout: Duration,
}

/// SQLite's `PRAGMA synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is durable, even on power loss.
    Full,
    /// Faster; the last commits may be lost on power loss or OS crash (never corrupted).
    Normal,
}

impl SqliteSynchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "full",
            SqliteSynchronous::Normal => "normal",
        }
    }
}

impl std::fmt::Display for SqliteSynchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
