//! [`Settings::load`]: the layers merged, extracted and checked.

use std::path::Path;

use figment::Figment;

use super::env_keys::{EnvKeys, typed_value};
use super::layers::{Layer, flag_value, process_env, valid_key};
use super::problems::Origins;
use super::{ConfigError, DEFAULTS, Settings};

impl Settings {
    /// Loads defaults, then `config_file` (if given; it must exist), then `JOBQ_*` variables
    /// from the process environment, then `overrides` (`("worker.concurrency", "8")`).
    pub fn load(
        config_file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Settings, ConfigError> {
        Self::load_with_env(config_file, process_env(EnvKeys::get()?)?, overrides)
    }

    /// Like [`Settings::load`], but the environment is given as `(name, value)` pairs instead
    /// of read from the process (for tests, and for callers that filter the environment).
    pub fn load_with_env<I, K, V>(
        config_file: Option<&Path>,
        env: I,
        overrides: &[(&str, String)],
    ) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut figment = Figment::new().merge(Layer::toml(
            DEFAULTS,
            "built-in defaults (config/default.toml)".to_string(),
        )?);
        let keys = EnvKeys::get()?;

        if let Some(path) = config_file {
            let origin = format!("config file `{}`", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::message(
                    format!("cannot read config file `{}`: {e}", path.display()),
                    None,
                )
            })?;
            figment = figment.merge(Layer::toml(&text, origin)?);
        }

        // Sorted by name, so the result does not depend on the environment's order.
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .map(|(name, value)| (name.as_ref().to_string(), value.as_ref().to_string()))
            .collect();
        vars.sort();
        for (name, value) in vars {
            if let Some((key, kind)) = keys.env_setting(&name) {
                figment = figment.merge(Layer::setting(
                    &key,
                    typed_value(&value, kind),
                    format!("environment variable `{name}`"),
                ));
            }
        }

        for (key, value) in overrides {
            let origin = format!("command-line override `{key}`");
            if !valid_key(key) {
                return Err(ConfigError::message(
                    "is not a setting name: use section.key, e.g. worker.concurrency".to_string(),
                    Some(origin),
                ));
            }
            figment = figment.merge(Layer::setting(key, flag_value(keys, key, value), origin));
        }

        let origins = Origins::new(&figment);
        let settings: Settings = figment.extract().map_err(|e| origins.convert(e))?;
        let problems = settings.check(&origins);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::new(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::configuration::test_support::*;
    use crate::configuration::{Backend, LogFormat, PanelKind, SqliteSynchronous};

    #[test]
    fn defaults_load() {
        let s = Settings::load_with_env(None, NO_ENV, &[]).expect("defaults");
        assert_eq!(s.database.url.as_str(), "sqlite://data/jobq.db");
        assert_eq!(s.database.url.backend(), Backend::Sqlite);
        assert_eq!(s.database.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.database.acquire_timeout, Duration::from_secs(10));
        assert_eq!(s.database.max_connections, 10);
        assert_eq!(s.database.sqlite_synchronous, SqliteSynchronous::Full);
        assert_eq!(s.database.sqlite_busy_timeout, Duration::from_secs(5));
        assert_eq!(s.worker.concurrency, 10);
        assert!(s.worker.queues.is_empty());
        assert_eq!(s.worker.lease, Duration::from_secs(30));
        assert_eq!(s.worker.poll_interval, Duration::from_secs(1));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.worker.completion_interval, Duration::from_millis(20));
        assert_eq!(s.worker.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.worker.metrics_bind, None);
        assert_eq!(s.maintenance.interval, Duration::from_secs(1));
        assert_eq!(
            s.maintenance.completed_retention,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            s.maintenance.stats_retention,
            Duration::from_secs(48 * 3600)
        );
        assert_eq!(s.log.format, LogFormat::Human);
        assert_eq!(s.log.filter, "info");
        assert!(s.queues.is_empty());
        assert!(s.periodic.is_empty());
        assert_eq!(s.queue_concurrency("default"), 10);
        assert_eq!(s.web.bind.to_string(), "127.0.0.1:8080");
        assert!(s.admins.is_empty());
    }

    #[test]
    fn example_toml_loads() {
        let file = config_file(include_str!("../../../config/example.toml"));
        let s = load(Some(&file), &[], &[]).expect("example.toml is valid");
        assert_eq!(s.queue_concurrency("panel"), 4);
        assert_eq!(s.periodic.len(), 1);
        assert_eq!(s.periodic[0].name, "sync-main");
        assert_eq!(
            s.periodic[0].payload,
            serde_json::json!({ "panel": "main" })
        );
        assert_eq!(s.admins.len(), 1);
        assert_eq!(s.admins[0].token_env, "JOBQ_TOKEN_ALICE");
        // The panel and plan as example.toml shows them: operators start from that file.
        let panel = s.panel("main").expect("panel main");
        assert_eq!(panel.kind, PanelKind::SUi);
        assert_eq!(panel.url.as_str(), "http://127.0.0.1:2095/app/");
        assert_eq!(panel.token_env.as_deref(), Some("JOBQ_PANEL_MAIN_TOKEN"));
        let plan = s.plan("basic").expect("plan basic");
        assert_eq!(plan.volume_gb, 10);
        assert_eq!(plan.volume_bytes(), 10 * 1024 * 1024 * 1024);
        assert_eq!(plan.days, 30);
        assert_eq!(plan.inbounds, [1]);
        assert!(plan.reset_usage_on_renew);
        assert_eq!(s.telegram.api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(s.discord.api_url.as_str(), "https://discord.com/");
    }

    #[test]
    fn missing_config_file_names_path() {
        let path = Path::new("/nonexistent/jobq-config.toml");
        let err = Settings::load_with_env(Some(path), NO_ENV, &[]).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/jobq-config.toml"),
            "{err}"
        );
    }
}
