//! The settings types of the program itself: database, workers, maintenance, logs, queues,
//! periodic jobs, the dashboard and its admins.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    BotSettings, DatabaseSettings, DiscordSettings, PanelSettings, PlanSettings, TelegramSettings,
    TranscriptSettings,
};

/// The effective settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub worker: WorkerSettings,
    pub maintenance: MaintenanceSettings,
    pub log: LogSettings,
    /// `[queues.NAME]`: per-queue overrides.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSettings>,
    /// `[[periodic]]`: jobs enqueued on a fixed interval.
    #[serde(default)]
    pub periodic: Vec<PeriodicSettings>,
    /// `[web]`: the admin dashboard.
    pub web: WebSettings,
    /// `[[admins]]`: the dashboard's named admins, each with the environment variable holding
    /// their token (tokens never live in a file).
    #[serde(default)]
    pub admins: Vec<AdminSettings>,
    /// `[[panels]]`: the VPN panels clients are provisioned on. Their credentials live in the
    /// environment variables each entry names (see [`Settings::panel_credentials`]).
    #[serde(default)]
    pub panels: Vec<PanelSettings>,
    /// `[[plans]]`: what a subscription buys.
    #[serde(default)]
    pub plans: Vec<PlanSettings>,
    /// `[telegram]`: the Bot API endpoint (the token comes from `JOBQ_TELEGRAM_TOKEN`).
    pub telegram: TelegramSettings,
    /// `[discord]`: the REST API endpoint (the token comes from `JOBQ_DISCORD_TOKEN`).
    pub discord: DiscordSettings,
    /// `[bots]`: what the Telegram and Discord bots share (the per-user command rate).
    #[serde(default)]
    pub bots: BotSettings,
    /// `[transcripts]`: where ticket transcripts are stored and how their links are made.
    pub transcripts: TranscriptSettings,
}

/// `[web]`: where the dashboard listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// `ADDR:PORT`; a non-loopback address needs at least one admin token.
    pub bind: SocketAddr,
    /// The address admins open, e.g. `https://jobs.example.com`; `""` when reached directly.
    /// An `https://` address marks the session cookie `Secure`.
    pub public_base_url: String,
}

impl WebSettings {
    /// Whether admins reach the dashboard over HTTPS (through a proxy that terminates TLS).
    pub fn https(&self) -> bool {
        self.public_base_url.starts_with("https://")
    }
}

/// An `[[admins]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Who the audit log says acted.
    pub name: String,
    /// The environment variable holding this admin's token.
    pub token_env: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs run at once, per queue, per process.
    pub concurrency: u32,
    /// Queues to work; empty means every queue of the known kinds.
    #[serde(deserialize_with = "string_list")]
    pub queues: Vec<String>,
    /// How long a claimed job is locked before the rescuer may take it back.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Fallback poll, besides wake-ups.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The completer flushes its batch this often.
    #[serde(with = "humantime_serde")]
    pub completion_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Where `GET /metrics` is served (`ADDR:PORT`); `None` (`""` in a file) serves none.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub metrics_bind: Option<SocketAddr>,
}

/// `""` for none, else `ADDR:PORT`.
fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::invalid_value(
            serde::de::Unexpected::Str(text),
            &"an address and port such as \"127.0.0.1:9100\" or \"[::1]:9100\", or \"\" for none",
        )
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// Tick of the rescuer and the scheduler.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Completed, cancelled and discarded jobs are pruned after this.
    #[serde(with = "humantime_serde")]
    pub completed_retention: Duration,
    /// Statistics are kept this long (at least a day).
    #[serde(with = "humantime_serde")]
    pub stats_retention: Duration,
    /// Admins get at most one failure alert per this interval: a job failing alone is
    /// reported at once, many failing together are gathered into one digest.
    #[serde(with = "humantime_serde", default = "default_failure_digest_every")]
    pub failure_digest_every: Duration,
}

fn default_failure_digest_every() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[queues.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Overrides `worker.concurrency` for this queue.
    pub concurrency: u32,
}

/// A `[[periodic]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicSettings {
    pub name: String,
    pub kind: String,
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub priority: Option<i16>,
}

impl PeriodicSettings {
    /// The start of the period `now` falls in, periods counted from the Unix epoch.
    pub fn period_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let every_ms = i64::try_from(self.every.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let ms = now.timestamp_millis();
        DateTime::from_timestamp_millis(ms - ms.rem_euclid(every_ms)).unwrap_or(now)
    }

    /// When the period after the one `now` falls in starts: the next job is enqueued then.
    pub fn next_period(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let every = chrono::Duration::from_std(self.every).unwrap_or(chrono::Duration::MAX);
        self.period_start(now)
            .checked_add_signed(every)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The key of one period's job: every worker enqueues it, one job results.
    pub fn period_key(&self, period: DateTime<Utc>) -> String {
        format!("{}{}", self.key_prefix(), period.to_rfc3339())
    }

    /// What the key of every period's job starts with.
    pub fn key_prefix(&self) -> String {
        format!("periodic:{}:", self.name)
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Accepts a list of strings, or one string of comma-separated names (handy in environment
/// variables: `JOBQ_WORKER_QUEUES=default,panel`).
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;

    impl<'de> serde::de::Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(split_list(text))
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items)
        }
    }

    d.deserialize_any(ListVisitor)
}

pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Settings {
    /// The concurrency for `queue`: its `[queues.NAME]` override, else `worker.concurrency`.
    pub fn queue_concurrency(&self, queue: &str) -> u32 {
        self.queues
            .get(queue)
            .map_or(self.worker.concurrency, |q| q.concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

    #[test]
    fn metrics_bind_is_an_address_or_none() {
        let file = config_file("[worker]\nmetrics_bind = \"127.0.0.1:9100\"\n");
        let s = load(Some(&file), &[], &[]).expect("loads");
        assert_eq!(
            s.worker.metrics_bind,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        let s = load(
            Some(&file),
            &[("JOBQ_WORKER_METRICS_BIND", "[::1]:9101")],
            &[],
        )
        .expect("env overrides the file");
        assert_eq!(s.worker.metrics_bind.map(|a| a.port()), Some(9101));
        let s = load(Some(&file), &[], &[("worker.metrics_bind", "0.0.0.0:9102")])
            .expect("a flag overrides the file");
        assert_eq!(s.worker.metrics_bind.map(|a| a.port()), Some(9102));
        let s = load(Some(&file), &[("JOBQ_WORKER_METRICS_BIND", "")], &[])
            .expect("empty turns it off");
        assert_eq!(s.worker.metrics_bind, None);
        // describe() round-trips both forms.
        for bind in ["", "127.0.0.1:9100"] {
            let s = load(None, &[("JOBQ_WORKER_METRICS_BIND", bind)], &[]).expect("loads");
            let text = s.describe();
            assert!(
                text.contains(&format!("metrics_bind = \"{bind}\"")),
                "{text}"
            );
            let again = config_file(&text);
            assert_eq!(load(Some(&again), &[], &[]).expect("reloads"), s);
        }
        for bad in [
            "9100",
            "localhost:9100",
            "127.0.0.1",
            "127.0.0.1:99999",
            "http://x:1",
        ] {
            let err = load_err(None, &[], &[("worker.metrics_bind", bad)]);
            assert!(err.contains("worker.metrics_bind"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
            assert!(err.contains("127.0.0.1:9100"), "{bad}: {err}");
        }
    }

    #[test]
    fn web_defaults_and_overrides() {
        let s = load(None, &[], &[]).expect("defaults");
        assert_eq!(s.web.bind.to_string(), "127.0.0.1:8080");
        assert!(s.web.public_base_url.is_empty());
        assert!(!s.web.https());
        assert!(s.admins.is_empty());
        let s = load(None, &[("JOBQ_WEB_BIND", "127.0.0.1:9000")], &[]).expect("env");
        assert_eq!(s.web.bind.to_string(), "127.0.0.1:9000");
        let s = load(
            None,
            &[("JOBQ_WEB_BIND", "127.0.0.1:9000")],
            &[("web.bind", "0.0.0.0:80")],
        )
        .expect("flag");
        assert_eq!(s.web.bind.to_string(), "0.0.0.0:80");
        let err = load_err(None, &[("JOBQ_WEB_BIND", "localhost")], &[]);
        assert!(err.contains("web.bind"), "{err}");
        assert!(err.contains("JOBQ_WEB_BIND"), "{err}");
        let err = load_err(
            None,
            &[("JOBQ_WEB_PUBLIC_BASE_URL", "jobs.example.com")],
            &[],
        );
        assert!(err.contains("web.public_base_url"), "{err}");
        let s = load(
            None,
            &[("JOBQ_WEB_PUBLIC_BASE_URL", "https://jobs.example.com")],
            &[],
        )
        .expect("https base");
        assert!(s.web.https());
    }
}
