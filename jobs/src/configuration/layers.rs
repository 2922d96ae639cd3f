//! The layers merged over the built-in defaults: a config file, `JOBQ_*` variables and
//! command-line overrides.

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::settings::split_list;
use super::{ConfigError, ENV_PREFIX};

/// How a string from an environment variable or a flag becomes a value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ValueKind {
    /// Kept as the string given (URLs, durations, names, filters).
    Text,
    /// An integer if it parses as one (else left as a string, to fail with a clear message).
    Int,
    /// A comma-separated list, or `[a, b]`.
    List,
}

/// The keys of the sections that environment variables may set, with their kinds.
const ENV_KEYS: &[(&str, &[(&str, ValueKind)])] = &[
    (
        "database",
        &[
            ("url", ValueKind::Text),
            ("connect_timeout", ValueKind::Text),
            ("acquire_timeout", ValueKind::Text),
            ("max_connections", ValueKind::Int),
            ("sqlite_synchronous", ValueKind::Text),
            ("sqlite_busy_timeout", ValueKind::Text),
        ],
    ),
    (
        "worker",
        &[
            ("concurrency", ValueKind::Int),
            ("queues", ValueKind::List),
            ("lease", ValueKind::Text),
            ("poll_interval", ValueKind::Text),
            ("shutdown_grace", ValueKind::Text),
            ("completion_interval", ValueKind::Text),
            ("heartbeat_interval", ValueKind::Text),
            ("metrics_bind", ValueKind::Text),
        ],
    ),
    (
        "maintenance",
        &[
            ("interval", ValueKind::Text),
            ("completed_retention", ValueKind::Text),
            ("stats_retention", ValueKind::Text),
            ("failure_digest_every", ValueKind::Text),
        ],
    ),
    (
        "log",
        &[("format", ValueKind::Text), ("filter", ValueKind::Text)],
    ),
    (
        "web",
        &[
            ("bind", ValueKind::Text),
            ("public_base_url", ValueKind::Text),
        ],
    ),
    (
        "telegram",
        &[
            ("api_url", ValueKind::Text),
            ("messages_per_second", ValueKind::Int),
            ("messages_per_chat_per_second", ValueKind::Int),
        ],
    ),
    ("discord", &[("api_url", ValueKind::Text)]),
    (
        "bots",
        &[
            ("commands_per_minute", ValueKind::Int),
            ("command_burst", ValueKind::Int),
        ],
    ),
    (
        "transcripts",
        &[
            ("store", ValueKind::Text),
            ("local_dir", ValueKind::Text),
            ("s3_endpoint", ValueKind::Text),
            ("s3_bucket", ValueKind::Text),
            ("s3_region", ValueKind::Text),
            ("s3_access_key_env", ValueKind::Text),
            ("s3_secret_key_env", ValueKind::Text),
            ("link_ttl", ValueKind::Text),
            ("public_base_url", ValueKind::Text),
        ],
    ),
];

fn known_kind(section: &str, key: &str) -> Option<ValueKind> {
    ENV_KEYS
        .iter()
        .find(|(s, _)| *s == section)
        .and_then(|(_, keys)| keys.iter().find(|(k, _)| *k == key))
        .map(|(_, kind)| *kind)
}

/// The setting an environment variable sets, if it is one of ours.
pub(super) fn env_setting(name: &str) -> Option<(String, ValueKind)> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let (section, key) = rest.split_once('_')?;
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let kind = known_kind(&section, &key)?;
    Some((format!("{section}.{key}"), kind))
}

pub(super) fn typed_value(raw: &str, kind: ValueKind) -> Value {
    match kind {
        ValueKind::Text => Value::from(raw.to_string()),
        ValueKind::Int => match raw.trim().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(raw.to_string()),
        },
        ValueKind::List => {
            let inner = raw.trim();
            let inner = inner
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(inner);
            let items: Vec<Value> = split_list(inner)
                .into_iter()
                .map(|s| Value::from(s.trim_matches(|c| c == '"' || c == '\'').to_string()))
                .collect();
            Value::from(items)
        }
    }
}

/// The kind of a flag override's key; keys we don't know are parsed like figment's env values
/// (they are rejected later as unknown settings unless they are valid).
pub(super) fn flag_value(key: &str, raw: &str) -> Value {
    let parts: Vec<&str> = key.split('.').collect();
    let kind = match parts.as_slice() {
        [section, key] => known_kind(section, key),
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

pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if env_setting(name).is_none() {
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
    use super::*;
    use std::time::Duration;

    use crate::configuration::DEFAULTS;
    use crate::configuration::test_support::*;
    use crate::configuration::{Backend, LogFormat, SqliteSynchronous};

    #[test]
    fn env_keys_match_default_toml() {
        let defaults: Dict = Toml::from_str(DEFAULTS).expect("defaults parse");
        for (section, keys) in ENV_KEYS {
            let table = defaults
                .get(*section)
                .and_then(Value::as_dict)
                .expect("section in default.toml");
            let mut in_file: Vec<&str> = table.keys().map(String::as_str).collect();
            let mut in_table: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            in_file.sort_unstable();
            in_table.sort_unstable();
            assert_eq!(in_file, in_table, "[{section}]");
        }
    }

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
