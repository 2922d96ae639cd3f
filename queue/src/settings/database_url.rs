//! The database URL: which backend it names, and its password kept out of every message.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::{ConfigError, ConfigProblem};

/// Which database a [`DatabaseUrl`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const ALLOWED_SCHEMES: &str =
    "allowed schemes are sqlite://, sqlite:, postgres:// and postgresql://";

/// The database URL. `Display` and `Debug` mask any password; [`DatabaseUrl::as_str`] gives
/// the real URL, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// Why a string is not a database URL; never contains the URL itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvalidUrl(String);

impl DatabaseUrl {
    /// Checks the scheme (and, for PostgreSQL, the URL syntax).
    pub fn parse(url: &str) -> Result<DatabaseUrl, ConfigError> {
        Self::check(url).map_err(|e| {
            ConfigError::single(ConfigProblem {
                setting: Some("database.url".to_string()),
                value: Some(format!("{:?}", mask_url(url))),
                origin: None,
                message: e.0,
            })
        })
    }

    fn check(url: &str) -> Result<DatabaseUrl, InvalidUrl> {
        let url = url.trim();
        if let Some(rest) = strip_sqlite(url) {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(InvalidUrl(
                    "has no database file: use e.g. sqlite://data/jobq.db".to_string(),
                ));
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed =
                url::Url::parse(url).map_err(|e| InvalidUrl(format!("is not a valid URL: {e}")))?;
            // Without a database name, PostgreSQL picks the OS user's database, and jobq would
            // create its tables wherever that is.
            let names_database = !parsed.path().trim_start_matches('/').is_empty()
                || parsed
                    .query_pairs()
                    .any(|(k, v)| k == "dbname" && !v.is_empty());
            if !names_database {
                return Err(InvalidUrl(
                    "names no database: use e.g. postgres://USER@HOST:5432/jobq".to_string(),
                ));
            }
        } else {
            return Err(InvalidUrl(format!(
                "has an unsupported scheme: {ALLOWED_SCHEMES}"
            )));
        }
        Ok(DatabaseUrl(url.to_string()))
    }

    /// The real URL, password included: only for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn backend(&self) -> Backend {
        if strip_sqlite(&self.0).is_some() {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// The SQLite database file: the URL without scheme and `?query`
    /// (`sqlite://data/jobq.db` → `data/jobq.db`, `sqlite:///abs/x.db` → `/abs/x.db`).
    /// `None` for PostgreSQL and for in-memory databases (`sqlite::memory:`, `?mode=memory`).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = strip_sqlite(&self.0)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory = path == ":memory:"
            || query
                .split('&')
                .any(|pair| pair.eq_ignore_ascii_case("mode=memory"));
        if path.is_empty() || in_memory {
            None
        } else {
            Some(PathBuf::from(path))
        }
    }

    /// The URL with any password replaced by `****`.
    pub fn masked(&self) -> String {
        mask_url(&self.0)
    }
}

fn strip_sqlite(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

/// Masks the password in `scheme://user:password@host/...` (also without `//`, for rejected
/// URLs) and any `password=` / `sslpassword=` query parameter. Errs on the side of masking too
/// much for odd URLs.
pub fn mask_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = head.to_string();
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push_str(":****");
            }
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    match after.split_once('?') {
        Some((base, query)) => {
            out.push_str(base);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{key}=****")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        Self::check(&url).map_err(|e| serde::de::Error::custom(e.0))
    }
}

impl FromStr for DatabaseUrl {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.masked()).finish()
    }
}
