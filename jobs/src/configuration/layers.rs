//! The layers merged over the built-in defaults: a config file, `JOBQ_*` variables and
//! command-line overrides.

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::ConfigError;
use super::env_keys::{EnvKeys, ValueKind, typed_value};

/// The kind of a flag override's key; keys we don't know are parsed like figment's env values
/// (they are rejected later as unknown settings unless they are valid).
pub(super) fn flag_value(keys: &EnvKeys, key: &str, raw: &str) -> Value {
    let parts: Vec<&str> = key.split('.').collect();
    let kind = match parts.as_slice() {
        [section, key] => keys.kind(section, key),
        ["queues", _, "concurrency"] => Some(ValueKind::Int),
        _ => None,
    };
    match kind {
        Some(kind) => typed_value(raw, kind),
        None => raw.parse().unwrap_or_else(|_| Value::from(raw.to_string())),
    }
}

pub(super) fn valid_key(key: &str) -> bool {
    key.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// One layer of settings, named for error messages.
pub(super) struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    pub(super) fn toml(text: &str, origin: String) -> Result<Layer, ConfigError> {
        let dict = Toml::from_str::<Dict>(text).map_err(|e| {
            let e = e.to_string();
            ConfigError::message(
                format!("{origin} is not valid TOML: {}", e.trim_end()),
                None,
            )
        })?;
        Ok(Layer {
            metadata: Metadata::named(origin),
            dict,
        })
    }

    pub(super) fn setting(key: &str, value: Value, origin: String) -> Layer {
        let dict = figment::util::nest(key, value)
            .into_dict()
            .unwrap_or_default();
        Layer {
            metadata: Metadata::named(origin),
            dict,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

pub(super) fn process_env(keys: &EnvKeys) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if keys.env_setting(name).is_none() {
            continue;
        }
        match value.into_string() {
            Ok(value) => vars.push((name.to_string(), value)),
            Err(_) => {
                return Err(ConfigError::message(
                    "is not valid UTF-8".to_string(),
                    Some(format!("environment variable `{name}`")),
                ));
            }
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::configuration::test_support::*;
    use crate::configuration::{Backend, LogFormat, SqliteSynchronous};

    #[test]
    fn file_overrides_defaults() {
        let file = config_file(
            r#"
            [database]
            url = "postgres://jobq:hunter2@db.example/jobq"
            sqlite_synchronous = "normal"

            [worker]
            concurrency = 4
            queues = ["default", "panel"]
            lease = "2m"

            [log]
            format = "json"

            [queues.panel]
            concurrency = 2

            [[periodic]]
            name = "sync-main"
            kind = "sync_usage"
            every = "10m"
            payload = { panel = "main" }
            priority = -5

            [[periodic]]
            name = "cleanup"
            kind = "cleanup"
            every = "1h"
            queue = "maintenance"
            "#,
        );
        let s = load(Some(&file), &[], &[]).expect("loads");
        assert_eq!(s.database.url.backend(), Backend::Postgres);
        assert_eq!(s.database.sqlite_synchronous, SqliteSynchronous::Normal);
        assert_eq!(s.database.max_connections, 10, "default kept");
        assert_eq!(s.worker.concurrency, 4);
        assert_eq!(s.worker.queues, ["default", "panel"]);
        assert_eq!(s.worker.lease, Duration::from_secs(120));
        assert_eq!(
            s.worker.poll_interval,
            Duration::from_secs(1),
            "default kept"
        );
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.queue_concurrency("panel"), 2);
        assert_eq!(s.queue_concurrency("default"), 4);
        assert_eq!(s.periodic.len(), 2);
        assert_eq!(
            s.periodic[0].payload,
            serde_json::json!({ "panel": "main" })
        );
        assert_eq!(s.periodic[0].priority, Some(-5));
        assert_eq!(s.periodic[1].payload, serde_json::json!({}));
        assert_eq!(s.periodic[1].queue.as_deref(), Some("maintenance"));
    }

    #[test]
    fn env_overrides_file() {
        let file = config_file("[worker]\nconcurrency = 4\nlease = \"2m\"\n");
        let env = [
            ("JOBQ_WORKER_CONCURRENCY", "6"),
            ("JOBQ_WORKER_SHUTDOWN_GRACE", "5s"),
            ("JOBQ_WORKER_QUEUES", "default, panel"),
            ("JOBQ_DATABASE_URL", "postgresql://u:p@localhost/jobq"),
            ("JOBQ_LOG_FILTER", "info,jobs=debug"),
            ("JOBQ_DATABASE_SQLITE_BUSY_TIMEOUT", "0"),
            // Not ours: ignored, not rejected.
            ("JOBQ_CONFIG", "/etc/jobq.toml"),
            ("JOBQ_TEST_DATABASE_URL", "mysql://nope"),
            ("JOBQ_SECRET_KEY", "xyz"),
            ("JOBQ_PANEL_TOKEN", "t"),
            ("JOBQ_WORKER_TOKEN", "t"),
            ("JOBQ_QUEUES_PANEL_CONCURRENCY", "x"),
            ("HOME", "/root"),
        ];
        let s = load(Some(&file), &env, &[]).expect("loads");
        assert_eq!(s.worker.concurrency, 6);
        assert_eq!(s.worker.lease, Duration::from_secs(120), "file kept");
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(5));
        assert_eq!(s.worker.queues, ["default", "panel"]);
        assert_eq!(s.database.url.as_str(), "postgresql://u:p@localhost/jobq");
        assert_eq!(s.log.filter, "info,jobs=debug");
        assert_eq!(s.database.sqlite_busy_timeout, Duration::ZERO);
    }

    #[test]
    fn flag_overrides_env() {
        let env = [
            ("JOBQ_WORKER_CONCURRENCY", "6"),
            ("JOBQ_WORKER_LEASE", "10s"),
        ];
        let flags = [
            ("worker.concurrency", "8"),
            ("worker.lease", "30s"),
            ("worker.queues", "a,b"),
            ("queues.panel.concurrency", "3"),
            ("log.format", "json"),
        ];
        let s = load(None, &env, &flags).expect("loads");
        assert_eq!(s.worker.concurrency, 8);
        assert_eq!(s.worker.lease, Duration::from_secs(30));
        assert_eq!(s.worker.queues, ["a", "b"]);
        assert_eq!(s.queue_concurrency("panel"), 3);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn invalid_toml_names_file() {
        let file = config_file("[worker\nconcurrency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("not valid TOML"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }
}
