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

pub(super) const ALLOWED_SCHEMES: &str =
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
            if let Err(e) = url::Url::parse(url) {
                return Err(InvalidUrl(format!("is not a valid URL: {e}")));
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
pub(super) fn mask_url(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

    #[test]
    fn password_masked() {
        let url =
            DatabaseUrl::parse("postgres://jobq:hunter2@db.example:5432/jobq?sslmode=require")
                .expect("valid");
        assert_eq!(
            url.to_string(),
            "postgres://jobq:****@db.example:5432/jobq?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(format!("{url:?}").contains("****"));
        assert!(url.as_str().contains("hunter2"), "as_str is the real URL");

        let url = DatabaseUrl::parse("postgres://db.example/jobq?user=x&password=hunter2")
            .expect("valid");
        assert_eq!(
            url.to_string(),
            "postgres://db.example/jobq?user=x&password=****"
        );

        let env = [("JOBQ_DATABASE_URL", "postgres://jobq:hunter2@db/jobq")];
        let s = load(None, &env, &[]).expect("loads");
        for text in [format!("{s:?}"), format!("{s:#?}"), s.describe()] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("jobq:****@db/jobq"), "{text}");
        }

        // Nor in errors about the URL.
        let env = [("JOBQ_DATABASE_URL", "mysql://jobq:hunter2@db/jobq")];
        let err = load(None, &env, &[]).expect_err("bad scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        for bad in [
            "mysql://jobq:hunter2@db/jobq",
            "mysql:jobq:hunter2@db/jobq",
            "jobq:hunter2@db/jobq",
            "postgres://jobq:hun ter2@d b/jobq",
        ] {
            let err = DatabaseUrl::parse(bad).expect_err("invalid");
            assert!(!err.to_string().contains("ter2"), "{err}");
            assert!(err.to_string().contains("database.url"), "{err}");
        }
        assert_eq!(mask_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(mask_url("sqlite://data/jobq.db"), "sqlite://data/jobq.db");
        assert_eq!(
            mask_url("postgres://u@h/db?application_name=a@b"),
            "postgres://u@h/db?application_name=a@b"
        );
    }

    #[test]
    fn bad_url_scheme_rejected() {
        let err = load_err(
            None,
            &[("JOBQ_DATABASE_URL", "mysql://localhost/jobq")],
            &[],
        );
        assert!(err.contains("database.url"), "{err}");
        assert!(err.contains("JOBQ_DATABASE_URL"), "{err}");
        assert!(
            err.contains("sqlite://, sqlite:, postgres:// and postgresql://"),
            "{err}"
        );
        assert!(DatabaseUrl::parse("data/jobq.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("postgres://exa mple/db").is_err());
    }

    #[test]
    fn sqlite_paths() {
        let path = |url: &str| DatabaseUrl::parse(url).expect("valid").sqlite_path();
        assert_eq!(
            path("sqlite://data/jobq.db"),
            Some(PathBuf::from("data/jobq.db"))
        );
        assert_eq!(path("sqlite:///abs/x.db"), Some(PathBuf::from("/abs/x.db")));
        assert_eq!(
            path("sqlite:data/x.db?mode=rwc"),
            Some(PathBuf::from("data/x.db"))
        );
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("sqlite://x.db?mode=memory"), None);
        assert_eq!(path("postgres://localhost/jobq"), None);
        assert_eq!(
            DatabaseUrl::parse("sqlite:x.db").expect("valid").backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/d")
                .expect("valid")
                .backend(),
            Backend::Postgres
        );
    }
}
