//! Settings for the whole program, loaded in layers (later layers win):
//!
//! 1. `config/default.toml`, compiled into the binary: every setting has a default there;
//! 2. an optional config file (`--config` / `JOBQ_CONFIG`, read by the caller);
//! 3. environment variables `JOBQ_<SECTION>_<KEY>` for the sections `database`, `worker`,
//!    `maintenance`, `log`, `web`, `telegram`, `discord`, `bots` and `transcripts` (e.g. `JOBQ_DATABASE_URL` → `database.url`,
//!    `JOBQ_WORKER_SHUTDOWN_GRACE` → `worker.shutdown_grace`); any other `JOBQ_` variable is
//!    ignored, as is a variable naming a key its section does not have;
//! 4. overrides from command-line flags, as `("worker.concurrency", "8")` pairs.
//!
//! Durations are humantime strings ("100ms", "30s", "10m", "24h"). Every value is checked after
//! loading; a [`ConfigError`] names each bad setting, the value given, where it came from and
//! what is allowed. Unknown keys in a config file are errors. The database URL's password never
//! appears in `Debug`, `Display`, [`Settings::describe`] or error messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The built-in defaults: the first layer.
const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables read as settings.
pub const ENV_PREFIX: &str = "JOBQ_";

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

/// The variable holding the token of the single admin named [`DEFAULT_ADMIN`].
pub const ADMIN_TOKEN_ENV: &str = "JOBQ_ADMIN_TOKEN";
/// The name [`ADMIN_TOKEN_ENV`]'s holder acts under.
pub const DEFAULT_ADMIN: &str = "admin";
/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// A dashboard admin with their token, read from the environment. The token is a secret:
/// `Debug` shows `[REDACTED]`, and nothing displays it.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub token: SecretString,
}

// ---------------------------------------------------------------------------------------------
// Panels, plans, chat endpoints

/// A `[[panels]]` entry: one VPN panel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSettings {
    /// How jobs and subscriptions name the panel; unique.
    pub name: String,
    /// The panel software; only `"s-ui"` for now.
    pub kind: PanelKind,
    /// The base URL including the panel's web path, e.g. `http://127.0.0.1:2095/app/` (a
    /// missing final `/` is added, so relative API paths join below it).
    pub url: BaseUrl,
    /// The environment variable holding the panel's API token (S-UI 1.2+: `/apiv2`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Instead of a token: the variables holding a login user and password (cookie session).
    #[serde(default)]
    pub login_user_env: Option<String>,
    #[serde(default)]
    pub login_password_env: Option<String>,
    /// Calls to this panel at once, across all worker processes.
    #[serde(default = "default_panel_concurrency")]
    pub concurrency: u32,
    /// At most this many calls a second to this panel, across all worker processes; none when
    /// absent.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Timeout of each call to the panel.
    #[serde(with = "humantime_serde", default = "default_panel_timeout")]
    pub timeout: Duration,
    /// How often `sync_usage` runs for this panel (a periodic job added for each panel unless
    /// `[[periodic]]` already syncs it).
    #[serde(with = "humantime_serde", default = "default_panel_sync_every")]
    pub sync_every: Duration,
}

fn default_panel_sync_every() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_panel_concurrency() -> u32 {
    4
}

fn default_panel_timeout() -> Duration {
    Duration::from_secs(15)
}

/// The panel software a [`PanelSettings`] entry talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PanelKind {
    #[serde(rename = "s-ui")]
    SUi,
}

impl PanelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelKind::SUi => "s-ui",
        }
    }
}

impl fmt::Display for PanelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `[[plans]]` entry: what a subscription buys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    /// How jobs name the plan; unique.
    pub name: String,
    /// Traffic allowance in GiB (1024³ bytes); 0 is unlimited.
    pub volume_gb: i64,
    /// Length of the subscription (and of each renewal) in days.
    pub days: i64,
    /// The panel's inbound ids the client is attached to.
    pub inbounds: Vec<i64>,
    /// Whether a renewal starts the traffic count again from zero.
    #[serde(default = "default_true")]
    pub reset_usage_on_renew: bool,
}

fn default_true() -> bool {
    true
}

/// Bytes in one GiB, the unit of [`PlanSettings::volume_gb`] (as S-UI's UI counts it).
pub const GIB: i64 = 1024 * 1024 * 1024;

impl PlanSettings {
    /// The allowance in bytes, as the panel stores it; 0 is unlimited.
    pub fn volume_bytes(&self) -> i64 {
        self.volume_gb.saturating_mul(GIB)
    }

    /// The length of the subscription.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.days).unwrap_or(0) * 86_400)
    }
}

/// `[telegram]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The Bot API server: Telegram's, a self-hosted one, or a test fake.
    pub api_url: BaseUrl,
    /// Telegram user ids of the admins: alerted by DM when jobs fail for good or a panel
    /// disagrees with our records.
    #[serde(default)]
    pub admins: Vec<i64>,
    /// Messages a second for the whole bot, across every worker process (Telegram allows
    /// about 30).
    #[serde(default = "default_messages_per_second")]
    pub messages_per_second: f64,
    /// Messages a second to one chat, across every worker process (Telegram allows about 1).
    #[serde(default = "default_messages_per_chat_per_second")]
    pub messages_per_chat_per_second: f64,
}

fn default_messages_per_second() -> f64 {
    30.0
}

fn default_messages_per_chat_per_second() -> f64 {
    1.0
}

/// `[discord]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// The REST API server: Discord's, or a test fake.
    pub api_url: BaseUrl,
    /// Discord user ids of the admins: alerted by DM like the Telegram admins.
    #[serde(default)]
    pub admins: Vec<i64>,
    /// The guilds (servers) the bot registers its slash commands in.
    #[serde(default)]
    pub guilds: Vec<i64>,
    /// Role ids whose members may use the bot's admin commands (`/notify`, `/jobs`).
    #[serde(default)]
    pub admin_roles: Vec<i64>,
}

/// `[bots]`: settings both chat bots share.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    /// Commands one user may send a minute, on average, across every bot process (admins
    /// bypass it, logged).
    #[serde(default = "default_commands_per_minute")]
    pub commands_per_minute: i64,
    /// Commands one user may send at once after a quiet spell.
    #[serde(default = "default_command_burst")]
    pub command_burst: i64,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            commands_per_minute: default_commands_per_minute(),
            command_burst: default_command_burst(),
        }
    }
}

fn default_commands_per_minute() -> i64 {
    20
}

fn default_command_burst() -> i64 {
    5
}

/// `[transcripts]`: the object store ticket transcripts go to, and their links.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptSettings {
    /// `"local"` (files under `local_dir`, links served by `jobq web`) or `"s3"`.
    pub store: TranscriptStoreKind,
    /// The local store's directory.
    pub local_dir: PathBuf,
    /// The S3 (or S3-compatible) server; `""` is AWS itself (from `s3_region`).
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    /// The environment variables holding the S3 access key id and secret key.
    pub s3_access_key_env: String,
    pub s3_secret_key_env: String,
    /// How long a transcript's link works.
    #[serde(with = "humantime_serde")]
    pub link_ttl: Duration,
    /// The address local links start with (where `jobq web` is reached); `""` is
    /// `web.public_base_url`, else `http://` + `web.bind`.
    pub public_base_url: String,
}

/// Where transcripts are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptStoreKind {
    Local,
    S3,
}

impl TranscriptStoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TranscriptStoreKind::Local => "local",
            TranscriptStoreKind::S3 => "s3",
        }
    }
}

/// The S3 credentials of `[transcripts]`, read from the variables it names. `Debug` shows
/// `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

/// An `http://` or `https://` base URL whose path ends in `/`, without user info, query or
/// fragment (credentials never go in a URL here: they come from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(url::Url);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let mut url = url::Url::parse(text.trim()).map_err(|e| {
            format!("is not a valid URL ({e}): use e.g. \"http://127.0.0.1:2095/app/\"")
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err("is not an http:// or https:// address".to_string());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "must not hold a user or password: credentials come from the environment \
                 variables the entry names"
                    .to_string(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "must not have a query or fragment: give the base address only".to_string(),
            );
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(BaseUrl(url))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `path` (relative, e.g. `"apiv2/clients"`) below this base.
    pub fn join(&self, path: &str) -> Result<url::Url, url::ParseError> {
        self.0.join(path.trim_start_matches('/'))
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BaseUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How jobq signs in to a panel, with the secrets read from the environment. `Debug` shows
/// `[REDACTED]` for every secret.
#[derive(Debug, Clone)]
pub enum PanelAuth {
    /// `Token: <token>` on the token API.
    Token(SecretString),
    /// A login form, then the session cookie.
    Login {
        user: SecretString,
        password: SecretString,
    },
}

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

impl fmt::Display for SqliteSynchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Database URL

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

const ALLOWED_SCHEMES: &str =
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
fn mask_url(url: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// Errors

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting, e.g. `worker.concurrency` or `periodic[1].every`.
    pub setting: Option<String>,
    /// The value given, as written (strings quoted; database passwords masked).
    pub value: Option<String>,
    /// Where the value came from, e.g. ``environment variable `JOBQ_WORKER_LEASE` ``.
    pub origin: Option<String>,
    /// What is wrong and what is allowed, e.g. `is out of range: allowed 1 to 10000`.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.setting, &self.value) {
            (Some(setting), Some(value)) => write!(f, "{setting} = {value} {}", self.message)?,
            (Some(setting), None) => write!(f, "{setting} {}", self.message)?,
            (None, _) => f.write_str(&self.message)?,
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// The configuration could not be loaded: one or more [`ConfigProblem`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(&self.problems))]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} configuration problems:", many.len());
            for problem in many {
                out.push_str("\n  - ");
                out.push_str(&problem.to_string());
            }
            out
        }
    }
}

impl ConfigError {
    fn single(problem: ConfigProblem) -> Self {
        ConfigError {
            problems: vec![problem],
        }
    }

    fn message(message: String, origin: Option<String>) -> Self {
        Self::single(ConfigProblem {
            setting: None,
            value: None,
            origin,
            message,
        })
    }

    /// Every problem found (at least one).
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

// ---------------------------------------------------------------------------------------------
// Allowed values

#[derive(Clone, Copy)]
struct Bound {
    value: Duration,
    label: &'static str,
}

const fn ms(n: u64, label: &'static str) -> Bound {
    Bound {
        value: Duration::from_millis(n),
        label,
    }
}

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

#[derive(Clone, Copy)]
enum Allowed {
    Int(i64, i64),
    Dur(Bound, Bound),
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Int(min, max) => write!(f, "allowed {min} to {max}"),
            Allowed::Dur(min, max) => write!(f, "allowed {} to {}", min.label, max.label),
        }
    }
}

const DB_TIMEOUT: Allowed = Allowed::Dur(ms(100, "100ms"), ms(10 * MIN, "10m"));
const CONCURRENCY: Allowed = Allowed::Int(1, 10_000);
const MAX_CONNECTIONS: Allowed = Allowed::Int(1, 1_000);
const BUSY_TIMEOUT: Allowed = Allowed::Dur(ms(0, "0s"), ms(10 * MIN, "10m"));
const LEASE: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(HOUR, "1h"));
const POLL_INTERVAL: Allowed = Allowed::Dur(ms(10, "10ms"), ms(5 * MIN, "5m"));
const SHUTDOWN_GRACE: Allowed = Allowed::Dur(ms(0, "0s"), ms(HOUR, "1h"));
const COMPLETION_INTERVAL: Allowed = Allowed::Dur(ms(1, "1ms"), ms(10 * SEC, "10s"));
const HEARTBEAT_INTERVAL: Allowed = Allowed::Dur(ms(100, "100ms"), ms(5 * MIN, "5m"));
const MAINTENANCE_INTERVAL: Allowed = Allowed::Dur(ms(100, "100ms"), ms(5 * MIN, "5m"));
const COMPLETED_RETENTION: Allowed = Allowed::Dur(ms(MIN, "1m"), ms(3650 * DAY, "3650d"));
const STATS_RETENTION: Allowed = Allowed::Dur(ms(DAY, "24h"), ms(3650 * DAY, "3650d"));
const FAILURE_DIGEST_EVERY: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(DAY, "24h"));
const PERIODIC_EVERY: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(3650 * DAY, "3650d"));
const PRIORITY: Allowed = Allowed::Int(-100, 100);
const PANEL_CONCURRENCY: Allowed = Allowed::Int(1, 64);
const PANEL_TIMEOUT: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(10 * MIN, "10m"));
const PANEL_SYNC_EVERY: Allowed = Allowed::Dur(ms(10 * SEC, "10s"), ms(DAY, "24h"));
const PLAN_VOLUME_GB: Allowed = Allowed::Int(0, 1_000_000);
const PLAN_DAYS: Allowed = Allowed::Int(1, 3650);
const COMMANDS_PER_MINUTE: Allowed = Allowed::Int(1, 10_000);
const COMMAND_BURST: Allowed = Allowed::Int(1, 1000);
/// Inbound ids are S-UI's `uint` row ids.
const INBOUND_ID: Allowed = Allowed::Int(1, u32::MAX as i64);
/// S3 presigned URLs live at most 7 days (SigV4).
const LINK_TTL: Allowed = Allowed::Dur(ms(MIN, "1m"), ms(7 * DAY, "7d"));
const ENV_NAME_RULE: &str = "is not an environment variable name: use A-Z, 0-9 and _ (the secret \
                             itself never goes in a file)";

const NAME_RULE: &str = "use 1 to 64 characters of a-z, 0-9, _ and -";

/// What is allowed for a setting, by its generic key (`queues.*.concurrency`, `periodic.every`).
fn hint(generic_key: &str) -> Option<String> {
    let allowed = match generic_key {
        "database.connect_timeout" | "database.acquire_timeout" => DB_TIMEOUT,
        "database.max_connections" => MAX_CONNECTIONS,
        "database.sqlite_busy_timeout" => BUSY_TIMEOUT,
        "worker.concurrency" | "queues.*.concurrency" => CONCURRENCY,
        "worker.lease" => LEASE,
        "worker.poll_interval" => POLL_INTERVAL,
        "worker.shutdown_grace" => SHUTDOWN_GRACE,
        "worker.completion_interval" => COMPLETION_INTERVAL,
        "worker.heartbeat_interval" => HEARTBEAT_INTERVAL,
        "maintenance.interval" => MAINTENANCE_INTERVAL,
        "maintenance.completed_retention" => COMPLETED_RETENTION,
        "maintenance.stats_retention" => STATS_RETENTION,
        "maintenance.failure_digest_every" => FAILURE_DIGEST_EVERY,
        "periodic.every" => PERIODIC_EVERY,
        "periodic.priority" => PRIORITY,
        "panels.concurrency" => PANEL_CONCURRENCY,
        "panels.timeout" => PANEL_TIMEOUT,
        "panels.sync_every" => PANEL_SYNC_EVERY,
        "plans.volume_gb" => PLAN_VOLUME_GB,
        "plans.days" => PLAN_DAYS,
        "bots.commands_per_minute" => COMMANDS_PER_MINUTE,
        "bots.command_burst" => COMMAND_BURST,
        "transcripts.link_ttl" => LINK_TTL,
        "transcripts.store" => return Some("\"local\" or \"s3\"".to_string()),
        "panels.kind" => return Some("the only kind is \"s-ui\"".to_string()),
        "panels.url" | "telegram.api_url" | "discord.api_url" => {
            return Some(
                "an http:// or https:// base URL such as \"http://127.0.0.1:2095/app/\""
                    .to_string(),
            );
        }
        "database.url" => return Some(ALLOWED_SCHEMES.to_string()),
        "worker.queues" => {
            return Some("each queue name 1 to 64 characters of a-z, 0-9, _ and -".to_string());
        }
        "periodic.name" | "periodic.queue" | "admins.name" | "panels.name" | "plans.name" => {
            return Some(NAME_RULE.to_string());
        }
        "web.bind" => return Some("an ADDR:PORT such as \"127.0.0.1:8080\"".to_string()),
        _ => return None,
    };
    Some(allowed.to_string())
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------------------------------------
// Layers

/// How a string from an environment variable or a flag becomes a value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ValueKind {
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
fn env_setting(name: &str) -> Option<(String, ValueKind)> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let (section, key) = rest.split_once('_')?;
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let kind = known_kind(&section, &key)?;
    Some((format!("{section}.{key}"), kind))
}

fn typed_value(raw: &str, kind: ValueKind) -> Value {
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
fn flag_value(key: &str, raw: &str) -> Value {
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

fn valid_key(key: &str) -> bool {
    key.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// One layer of settings, named for error messages.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    fn toml(text: &str, origin: String) -> Result<Layer, ConfigError> {
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

    fn setting(key: &str, value: Value, origin: String) -> Layer {
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

fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
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

// ---------------------------------------------------------------------------------------------
// Loading

impl Settings {
    /// Loads defaults, then `config_file` (if given; it must exist), then `JOBQ_*` variables
    /// from the process environment, then `overrides` (`("worker.concurrency", "8")`).
    pub fn load(
        config_file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Settings, ConfigError> {
        Self::load_with_env(config_file, process_env()?, overrides)
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
            if let Some((key, kind)) = env_setting(&name) {
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
            figment = figment.merge(Layer::setting(key, flag_value(key, value), origin));
        }

        let origins = Origins::new(&figment);
        let settings: Settings = figment.extract().map_err(|e| origins.convert(e))?;
        let problems = settings.check(&origins);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The concurrency for `queue`: its `[queues.NAME]` override, else `worker.concurrency`.
    pub fn queue_concurrency(&self, queue: &str) -> u32 {
        self.queues
            .get(queue)
            .map_or(self.worker.concurrency, |q| q.concurrency)
    }

    fn check(&self, o: &Origins<'_>) -> Vec<ConfigProblem> {
        let mut c = Checker {
            origins: o,
            problems: Vec::new(),
        };
        let db = &self.database;
        c.duration("database.connect_timeout", db.connect_timeout, DB_TIMEOUT);
        c.duration("database.acquire_timeout", db.acquire_timeout, DB_TIMEOUT);
        c.int(
            "database.max_connections",
            i64::from(db.max_connections),
            MAX_CONNECTIONS,
        );
        c.duration(
            "database.sqlite_busy_timeout",
            db.sqlite_busy_timeout,
            BUSY_TIMEOUT,
        );

        let w = &self.worker;
        c.int("worker.concurrency", i64::from(w.concurrency), CONCURRENCY);
        let mut seen = BTreeSet::new();
        for (i, queue) in w.queues.iter().enumerate() {
            let key = format!("worker.queues.{i}");
            if !valid_name(queue) {
                c.problem(
                    &key,
                    true,
                    format!("is not a valid queue name: {NAME_RULE}"),
                );
            } else if !seen.insert(queue.as_str()) {
                c.problem(&key, true, "is listed twice".to_string());
            }
        }
        c.duration("worker.lease", w.lease, LEASE);
        c.duration("worker.poll_interval", w.poll_interval, POLL_INTERVAL);
        c.duration("worker.shutdown_grace", w.shutdown_grace, SHUTDOWN_GRACE);
        c.duration(
            "worker.completion_interval",
            w.completion_interval,
            COMPLETION_INTERVAL,
        );
        c.duration(
            "worker.heartbeat_interval",
            w.heartbeat_interval,
            HEARTBEAT_INTERVAL,
        );
        if w.heartbeat_interval >= w.lease {
            c.problem(
                "worker.heartbeat_interval",
                true,
                format!(
                    "must be shorter than worker.lease ({}), or running jobs lose their lease \
                     between heartbeats",
                    format_duration(w.lease)
                ),
            );
        }

        let m = &self.maintenance;
        c.duration("maintenance.interval", m.interval, MAINTENANCE_INTERVAL);
        c.duration(
            "maintenance.completed_retention",
            m.completed_retention,
            COMPLETED_RETENTION,
        );
        c.duration(
            "maintenance.stats_retention",
            m.stats_retention,
            STATS_RETENTION,
        );
        c.duration(
            "maintenance.failure_digest_every",
            m.failure_digest_every,
            FAILURE_DIGEST_EVERY,
        );

        if self.log.filter.trim().is_empty() {
            c.problem(
                "log.filter",
                true,
                "must not be empty: use EnvFilter directives such as \"info\"".to_string(),
            );
        }

        for (name, queue) in &self.queues {
            if !valid_name(name) {
                c.problem(
                    &format!("queues.{name}"),
                    false,
                    format!("is not a valid queue name: {NAME_RULE}"),
                );
            }
            c.int(
                &format!("queues.{name}.concurrency"),
                i64::from(queue.concurrency),
                CONCURRENCY,
            );
        }

        let mut names = BTreeSet::new();
        for (i, p) in self.periodic.iter().enumerate() {
            let key = |field: &str| format!("periodic.{i}.{field}");
            if !valid_name(&p.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid periodic job name: {NAME_RULE}"),
                );
            } else if !names.insert(p.name.as_str()) {
                c.problem(
                    &key("name"),
                    true,
                    "is used by more than one [[periodic]] entry: names must be unique".to_string(),
                );
            }
            if p.kind.trim().is_empty() {
                c.problem(&key("kind"), true, "must not be empty".to_string());
            }
            c.duration(&key("every"), p.every, PERIODIC_EVERY);
            if let Some(queue) = &p.queue
                && !valid_name(queue)
            {
                c.problem(
                    &key("queue"),
                    true,
                    format!("is not a valid queue name: {NAME_RULE}"),
                );
            }
            if let Some(priority) = p.priority {
                c.int(&key("priority"), i64::from(priority), PRIORITY);
            }
        }

        let base = &self.web.public_base_url;
        if !base.is_empty() {
            let parsed = url::Url::parse(base);
            if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                c.problem(
                    "web.public_base_url",
                    true,
                    "is not an http:// or https:// address (or \"\" for none)".to_string(),
                );
            }
        }
        let mut admin_names = BTreeSet::new();
        for (i, a) in self.admins.iter().enumerate() {
            let key = |field: &str| format!("admins.{i}.{field}");
            if !valid_name(&a.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid admin name: {NAME_RULE}"),
                );
            } else if !admin_names.insert(a.name.as_str()) {
                c.problem(
                    &key("name"),
                    true,
                    "is used by more than one [[admins]] entry: names must be unique".to_string(),
                );
            }
            let env_ok = !a.token_env.is_empty()
                && a.token_env
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !env_ok {
                c.problem(
                    &key("token_env"),
                    true,
                    "is not an environment variable name: use A-Z, 0-9 and _ (the token itself \
                     never goes in a file)"
                        .to_string(),
                );
            }
        }
        self.check_panels(&mut c);
        self.check_plans(&mut c);
        self.check_admin_ids(&mut c);
        self.check_transcripts(&mut c);
        self.check_telegram(&mut c);
        c.int(
            "bots.commands_per_minute",
            self.bots.commands_per_minute,
            COMMANDS_PER_MINUTE,
        );
        c.int("bots.command_burst", self.bots.command_burst, COMMAND_BURST);
        c.problems
    }

    /// With `store = "s3"`, every setting S3 needs is given: never a silent fallback to local
    /// files.
    fn check_transcripts(&self, c: &mut Checker<'_, '_>) {
        let t = &self.transcripts;
        c.duration("transcripts.link_ttl", t.link_ttl, LINK_TTL);
        let http_or_empty = |url: &str| {
            url.is_empty()
                || url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        };
        if !http_or_empty(&t.public_base_url) {
            c.problem(
                "transcripts.public_base_url",
                true,
                "is not an http:// or https:// address (or \"\" for web.public_base_url)"
                    .to_string(),
            );
        }
        if t.local_dir.as_os_str().is_empty() {
            c.problem(
                "transcripts.local_dir",
                true,
                "must not be empty".to_string(),
            );
        }
        if t.store != TranscriptStoreKind::S3 {
            return;
        }
        if !http_or_empty(&t.s3_endpoint) {
            c.problem(
                "transcripts.s3_endpoint",
                true,
                "is not an http:// or https:// address (or \"\" for AWS)".to_string(),
            );
        }
        for (field, value) in [("s3_bucket", &t.s3_bucket), ("s3_region", &t.s3_region)] {
            if value.trim().is_empty() {
                c.problem(
                    &format!("transcripts.{field}"),
                    false,
                    "is missing: store = \"s3\" needs it".to_string(),
                );
            }
        }
        for (field, var) in [
            ("s3_access_key_env", &t.s3_access_key_env),
            ("s3_secret_key_env", &t.s3_secret_key_env),
        ] {
            if var.is_empty() {
                c.problem(
                    &format!("transcripts.{field}"),
                    false,
                    "is missing: store = \"s3\" needs the name of the environment variable \
                     holding it"
                        .to_string(),
                );
            } else if !valid_env_name(var) {
                c.problem(
                    &format!("transcripts.{field}"),
                    true,
                    ENV_NAME_RULE.to_string(),
                );
            }
        }
    }

    /// The S3 credentials from the variables `[transcripts]` names; an unset or empty one is
    /// an error naming the setting and the variable (never a value).
    pub fn transcript_s3_credentials(&self) -> Result<S3Credentials, ConfigError> {
        self.transcript_s3_credentials_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::transcript_s3_credentials`] with the environment given as a lookup.
    pub fn transcript_s3_credentials_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Credentials, ConfigError> {
        let t = &self.transcripts;
        let mut problems = Vec::new();
        let mut read = |field: &str, var: &str| {
            let value = lookup(var).filter(|v| !v.trim().is_empty());
            if value.is_none() {
                problems.push(ConfigProblem {
                    setting: Some(format!("transcripts.{field}")),
                    value: None,
                    origin: None,
                    message: format!(
                        "names the environment variable `{var}`, which is not set: set it to the \
                         S3 {}",
                        if field == "s3_access_key_env" {
                            "access key id"
                        } else {
                            "secret access key"
                        }
                    ),
                });
            }
            value.map(SecretString::from)
        };
        let access = read("s3_access_key_env", &t.s3_access_key_env);
        let secret = read("s3_secret_key_env", &t.s3_secret_key_env);
        match (access, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => Err(ConfigError { problems }),
        }
    }

    /// Where local transcript links point: `transcripts.public_base_url`, else
    /// `web.public_base_url`, else the dashboard's own address.
    pub fn transcript_base_url(&self) -> String {
        let chosen = [&self.transcripts.public_base_url, &self.web.public_base_url]
            .into_iter()
            .find(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("http://{}", self.web.bind));
        chosen.trim_end_matches('/').to_string()
    }

    fn check_panels(&self, c: &mut Checker<'_, '_>) {
        let mut names = BTreeSet::new();
        for (i, p) in self.panels.iter().enumerate() {
            let key = |field: &str| format!("panels.{i}.{field}");
            if !valid_name(&p.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid panel name: {NAME_RULE}"),
                );
            } else if !names.insert(p.name.as_str()) {
                c.problem(
                    &key("name"),
                    true,
                    "is used by more than one [[panels]] entry: names must be unique".to_string(),
                );
            }
            let vars = [
                ("token_env", &p.token_env),
                ("login_user_env", &p.login_user_env),
                ("login_password_env", &p.login_password_env),
            ];
            for (field, var) in vars {
                if let Some(var) = var
                    && !valid_env_name(var)
                {
                    c.problem(&key(field), true, ENV_NAME_RULE.to_string());
                }
            }
            match (&p.token_env, &p.login_user_env, &p.login_password_env) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                (Some(_), _, _) => c.problem(
                    &key("token_env"),
                    false,
                    "and login_user_env/login_password_env are both set: give either a token \
                     or a login, not both"
                        .to_string(),
                ),
                (None, None, None) => c.problem(
                    &format!("panels.{i}"),
                    false,
                    format!(
                        "(panel {:?}) has no credentials: set token_env, or login_user_env and \
                         login_password_env, to the environment variables holding them",
                        p.name
                    ),
                ),
                (None, Some(_), None) => c.problem(
                    &key("login_password_env"),
                    false,
                    "is missing: login_user_env needs login_password_env too".to_string(),
                ),
                (None, None, Some(_)) => c.problem(
                    &key("login_user_env"),
                    false,
                    "is missing: login_password_env needs login_user_env too".to_string(),
                ),
            }
            c.int(
                &key("concurrency"),
                i64::from(p.concurrency),
                PANEL_CONCURRENCY,
            );
            if let Some(rps) = p.requests_per_second
                && !(rps.is_finite() && rps > 0.0 && rps <= 10_000.0)
            {
                c.problem(
                    &key("requests_per_second"),
                    true,
                    "is out of range: allowed more than 0, at most 10000 (leave it out for no \
                     limit)"
                        .to_string(),
                );
            }
            c.duration(&key("timeout"), p.timeout, PANEL_TIMEOUT);
            c.duration(&key("sync_every"), p.sync_every, PANEL_SYNC_EVERY);
        }
    }

    /// Admin ids are user ids: positive.
    fn check_admin_ids(&self, c: &mut Checker<'_, '_>) {
        let lists = [
            ("telegram.admins", &self.telegram.admins, "a user id"),
            ("discord.admins", &self.discord.admins, "a user id"),
            ("discord.guilds", &self.discord.guilds, "a guild id"),
            (
                "discord.admin_roles",
                &self.discord.admin_roles,
                "a role id",
            ),
        ];
        for (key, ids, what) in lists {
            if let Some(i) = ids.iter().position(|id| *id <= 0) {
                c.problem(
                    &format!("{key}.{i}"),
                    true,
                    format!("is not {what}: ids are positive integers"),
                );
            }
        }
    }

    /// Every admin to alert, on either platform.
    pub fn admin_recipients(&self) -> Vec<crate::kinds::Recipient> {
        use crate::kinds::{Platform, Recipient, UserId};
        let telegram = self
            .telegram
            .admins
            .iter()
            .map(|id| (Platform::Telegram, *id));
        let discord = self
            .discord
            .admins
            .iter()
            .map(|id| (Platform::Discord, *id));
        telegram
            .chain(discord)
            .filter_map(|(platform, id)| {
                UserId::try_from(id)
                    .ok()
                    .map(|id| Recipient::new(platform, id))
            })
            .collect()
    }

    fn check_telegram(&self, c: &mut Checker<'_, '_>) {
        let rates = [
            (
                "telegram.messages_per_second",
                self.telegram.messages_per_second,
            ),
            (
                "telegram.messages_per_chat_per_second",
                self.telegram.messages_per_chat_per_second,
            ),
        ];
        for (key, rate) in rates {
            if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
                c.problem(
                    key,
                    true,
                    "is out of range: allowed more than 0, at most 10000 messages a second"
                        .to_string(),
                );
            }
        }
    }

    fn check_plans(&self, c: &mut Checker<'_, '_>) {
        let mut names = BTreeSet::new();
        for (i, p) in self.plans.iter().enumerate() {
            let key = |field: &str| format!("plans.{i}.{field}");
            if !valid_name(&p.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid plan name: {NAME_RULE}"),
                );
            } else if !names.insert(p.name.as_str()) {
                c.problem(
                    &key("name"),
                    true,
                    "is used by more than one [[plans]] entry: names must be unique".to_string(),
                );
            }
            c.int(&key("volume_gb"), p.volume_gb, PLAN_VOLUME_GB);
            c.int(&key("days"), p.days, PLAN_DAYS);
            if p.inbounds.is_empty() {
                c.problem(
                    &key("inbounds"),
                    false,
                    "is empty: list the panel inbound ids the client joins, e.g. [1]".to_string(),
                );
            }
            let mut seen = BTreeSet::new();
            for (j, inbound) in p.inbounds.iter().enumerate() {
                let key = key(&format!("inbounds.{j}"));
                if !(1..=i64::from(u32::MAX)).contains(inbound) {
                    c.problem(&key, true, format!("is not an inbound id: {INBOUND_ID}"));
                } else if !seen.insert(*inbound) {
                    c.problem(&key, true, "is listed twice".to_string());
                }
            }
        }
    }

    /// The `[[panels]]` entry named `name`.
    pub fn panel(&self, name: &str) -> Option<&PanelSettings> {
        self.panels.iter().find(|p| p.name == name)
    }

    /// The periodic jobs to run: `[[periodic]]`, plus a `sync_usage` every `sync_every` for
    /// each panel that no `[[periodic]]` entry syncs already.
    pub fn periodic_jobs(&self) -> Vec<PeriodicSettings> {
        let mut jobs = self.periodic.clone();
        for panel in &self.panels {
            let synced = self.periodic.iter().any(|p| {
                p.kind == "sync_usage"
                    && p.payload.get("panel").and_then(|v| v.as_str()) == Some(&panel.name)
            });
            if !synced {
                jobs.push(PeriodicSettings {
                    name: format!("sync-{}", panel.name),
                    kind: "sync_usage".to_string(),
                    every: panel.sync_every,
                    payload: serde_json::json!({ "panel": panel.name }),
                    queue: None,
                    priority: None,
                });
            }
        }
        jobs
    }

    /// The `[[plans]]` entry named `name`.
    pub fn plan(&self, name: &str) -> Option<&PlanSettings> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Every panel's credentials, by panel name, read from the environment variables its entry
    /// names. An unset or empty variable is an error naming the panel and the variable (never
    /// a value); all such problems are reported together.
    pub fn panel_credentials(&self) -> Result<BTreeMap<String, PanelAuth>, ConfigError> {
        self.panel_credentials_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::panel_credentials`] with the environment given as a lookup (for tests).
    pub fn panel_credentials_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, PanelAuth>, ConfigError> {
        let mut problems = Vec::new();
        let mut found = BTreeMap::new();
        for (i, p) in self.panels.iter().enumerate() {
            let mut read = |field: &str, var: &str| {
                let value = lookup(var).filter(|v| !v.trim().is_empty());
                if value.is_none() {
                    problems.push(ConfigProblem {
                        setting: Some(format!("panels[{i}].{field}")),
                        value: None,
                        origin: None,
                        message: format!(
                            "names the environment variable `{var}`, which is not set: set it \
                             to panel {}'s {}",
                            p.name,
                            match field {
                                "token_env" => "API token",
                                "login_user_env" => "login user",
                                _ => "login password",
                            }
                        ),
                    });
                }
                value.map(SecretString::from)
            };
            let auth = match (&p.token_env, &p.login_user_env, &p.login_password_env) {
                (Some(var), _, _) => read("token_env", var).map(PanelAuth::Token),
                (None, Some(user), Some(password)) => {
                    let user = read("login_user_env", user);
                    let password = read("login_password_env", password);
                    user.zip(password)
                        .map(|(user, password)| PanelAuth::Login { user, password })
                }
                // Refused when the settings were loaded.
                _ => None,
            };
            if let Some(auth) = auth {
                found.insert(p.name.clone(), auth);
            }
        }
        if problems.is_empty() {
            Ok(found)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The dashboard's admins with their tokens from the process environment: each
    /// `[[admins]]` entry's `token_env`, and `JOBQ_ADMIN_TOKEN` as the admin named `admin`.
    /// Empty when no token is configured. A named variable that is unset, a token shorter than
    /// [`MIN_TOKEN_LEN`] or two admins sharing a token are errors naming the setting (never the
    /// token).
    pub fn admin_tokens(&self) -> Result<Vec<AdminToken>, ConfigError> {
        self.admin_tokens_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::admin_tokens`] with the environment given as a lookup (for tests).
    pub fn admin_tokens_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<AdminToken>, ConfigError> {
        let mut problems = Vec::new();
        let mut admins: Vec<(Option<String>, String, AdminToken)> = Vec::new();
        let mut problem = |setting: Option<String>, message: String| {
            problems.push(ConfigProblem {
                setting,
                value: None,
                origin: None,
                message,
            });
        };
        if let Some(token) = lookup(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty()) {
            admins.push((
                None,
                ADMIN_TOKEN_ENV.to_string(),
                AdminToken {
                    name: DEFAULT_ADMIN.to_string(),
                    token: SecretString::from(token),
                },
            ));
        }
        for (i, a) in self.admins.iter().enumerate() {
            let setting = format!("admins[{i}].token_env");
            match lookup(&a.token_env).filter(|t| !t.is_empty()) {
                None => problem(
                    Some(setting),
                    format!(
                        "names the environment variable `{}`, which is not set: set it to \
                         admin {}'s token, or remove the entry",
                        a.token_env, a.name
                    ),
                ),
                Some(token) => admins.push((
                    Some(setting),
                    a.token_env.clone(),
                    AdminToken {
                        name: a.name.clone(),
                        token: SecretString::from(token),
                    },
                )),
            }
        }
        for (setting, var, admin) in &admins {
            let token = admin.token.expose_secret();
            if token.chars().count() < MIN_TOKEN_LEN || token.trim() != token {
                problem(
                    setting.clone(),
                    format!(
                        "the token in `{var}` is too weak: use at least {MIN_TOKEN_LEN} \
                         characters without surrounding spaces (e.g. `openssl rand -hex 32`)"
                    ),
                );
            }
        }
        for (i, (_, var, a)) in admins.iter().enumerate() {
            for (_, other_var, b) in &admins[i + 1..] {
                if a.name == b.name {
                    problem(
                        None,
                        format!(
                            "two admins are named `{}` (`{var}` and `{other_var}`): the audit \
                             log could not tell them apart",
                            a.name
                        ),
                    );
                } else if a.token.expose_secret() == b.token.expose_secret() {
                    problem(
                        None,
                        format!(
                            "`{var}` and `{other_var}` hold the same token: give each admin \
                             their own, so the audit log can tell them apart"
                        ),
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(admins.into_iter().map(|(_, _, a)| a).collect())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// A readable listing of the effective settings (TOML-like; the URL's password masked),
    /// for `jobq config check`.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let d = format_duration;
        let mut out = String::new();
        let db = &self.database;
        let w = &self.worker;
        let m = &self.maintenance;
        // Writing to a String cannot fail.
        let _ = writeln!(out, "[database]");
        let _ = writeln!(out, "url = {:?}  # {}", db.url.masked(), db.url.backend());
        let _ = writeln!(out, "connect_timeout = \"{}\"", d(db.connect_timeout));
        let _ = writeln!(out, "acquire_timeout = \"{}\"", d(db.acquire_timeout));
        let _ = writeln!(out, "max_connections = {}", db.max_connections);
        let _ = writeln!(out, "sqlite_synchronous = \"{}\"", db.sqlite_synchronous);
        let _ = writeln!(
            out,
            "sqlite_busy_timeout = \"{}\"",
            d(db.sqlite_busy_timeout)
        );
        let _ = writeln!(out, "\n[worker]");
        let _ = writeln!(out, "concurrency = {}", w.concurrency);
        let queues: Vec<String> = w.queues.iter().map(|q| format!("{q:?}")).collect();
        let _ = write!(out, "queues = [{}]", queues.join(", "));
        let _ = writeln!(
            out,
            "{}",
            if w.queues.is_empty() {
                "  # every queue of the known kinds"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "lease = \"{}\"", d(w.lease));
        let _ = writeln!(out, "poll_interval = \"{}\"", d(w.poll_interval));
        let _ = writeln!(out, "shutdown_grace = \"{}\"", d(w.shutdown_grace));
        let _ = writeln!(
            out,
            "completion_interval = \"{}\"",
            d(w.completion_interval)
        );
        let _ = writeln!(out, "heartbeat_interval = \"{}\"", d(w.heartbeat_interval));
        let _ = writeln!(
            out,
            "metrics_bind = \"{}\"",
            w.metrics_bind.map(|a| a.to_string()).unwrap_or_default()
        );
        let _ = writeln!(out, "\n[maintenance]");
        let _ = writeln!(out, "interval = \"{}\"", d(m.interval));
        let _ = writeln!(
            out,
            "completed_retention = \"{}\"",
            d(m.completed_retention)
        );
        let _ = writeln!(out, "stats_retention = \"{}\"", d(m.stats_retention));
        let _ = writeln!(
            out,
            "failure_digest_every = \"{}\"",
            d(m.failure_digest_every)
        );
        let _ = writeln!(out, "\n[log]");
        let _ = writeln!(out, "format = \"{}\"", self.log.format);
        let _ = writeln!(out, "filter = {:?}", self.log.filter);
        for (name, queue) in &self.queues {
            let _ = writeln!(out, "\n[queues.{}]", toml_key(name));
            let _ = writeln!(out, "concurrency = {}", queue.concurrency);
        }
        for p in &self.periodic {
            let _ = writeln!(out, "\n[[periodic]]");
            let _ = writeln!(out, "name = {:?}", p.name);
            let _ = writeln!(out, "kind = {:?}", p.kind);
            let _ = writeln!(out, "every = \"{}\"", d(p.every));
            let _ = writeln!(out, "payload = {}", json_as_toml(&p.payload));
            if let Some(queue) = &p.queue {
                let _ = writeln!(out, "queue = {queue:?}");
            }
            if let Some(priority) = p.priority {
                let _ = writeln!(out, "priority = {priority}");
            }
        }
        let _ = writeln!(out, "\n[web]");
        let _ = writeln!(out, "bind = \"{}\"", self.web.bind);
        let _ = writeln!(out, "public_base_url = {:?}", self.web.public_base_url);
        for a in &self.admins {
            let _ = writeln!(out, "\n[[admins]]");
            let _ = writeln!(out, "name = {:?}", a.name);
            let _ = writeln!(
                out,
                "token_env = {:?}  # the token itself is never shown",
                a.token_env
            );
        }
        for p in &self.panels {
            let _ = writeln!(out, "\n[[panels]]");
            let _ = writeln!(out, "name = {:?}", p.name);
            let _ = writeln!(out, "kind = \"{}\"", p.kind);
            let _ = writeln!(out, "url = {:?}", p.url.as_str());
            let vars = [
                ("token_env", &p.token_env),
                ("login_user_env", &p.login_user_env),
                ("login_password_env", &p.login_password_env),
            ];
            for (field, var) in vars {
                if let Some(var) = var {
                    let _ = writeln!(out, "{field} = {var:?}  # the secret itself is never shown");
                }
            }
            let _ = writeln!(out, "concurrency = {}", p.concurrency);
            if let Some(rps) = p.requests_per_second {
                let _ = writeln!(out, "requests_per_second = {rps:?}");
            }
            let _ = writeln!(out, "timeout = \"{}\"", d(p.timeout));
            let _ = writeln!(out, "sync_every = \"{}\"", d(p.sync_every));
        }
        for p in &self.plans {
            let _ = writeln!(out, "\n[[plans]]");
            let _ = writeln!(out, "name = {:?}", p.name);
            let _ = writeln!(out, "volume_gb = {}", p.volume_gb);
            let _ = writeln!(out, "days = {}", p.days);
            let inbounds: Vec<String> = p.inbounds.iter().map(i64::to_string).collect();
            let _ = writeln!(out, "inbounds = [{}]", inbounds.join(", "));
            let _ = writeln!(out, "reset_usage_on_renew = {}", p.reset_usage_on_renew);
        }
        let _ = writeln!(out, "\n[telegram]");
        let _ = writeln!(out, "api_url = {:?}", self.telegram.api_url.as_str());
        let _ = writeln!(
            out,
            "messages_per_second = {:?}",
            self.telegram.messages_per_second
        );
        let _ = writeln!(
            out,
            "messages_per_chat_per_second = {:?}",
            self.telegram.messages_per_chat_per_second
        );
        let _ = writeln!(out, "\n[discord]");
        let _ = writeln!(out, "api_url = {:?}", self.discord.api_url.as_str());
        let ids = |ids: &[i64]| {
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "guilds = [{}]", ids(&self.discord.guilds));
        let _ = writeln!(out, "admin_roles = [{}]", ids(&self.discord.admin_roles));
        let _ = writeln!(out, "\n[bots]");
        let _ = writeln!(
            out,
            "commands_per_minute = {}",
            self.bots.commands_per_minute
        );
        let _ = writeln!(out, "command_burst = {}", self.bots.command_burst);
        let t = &self.transcripts;
        let _ = writeln!(out, "\n[transcripts]");
        let _ = writeln!(out, "store = \"{}\"", t.store.as_str());
        let _ = writeln!(out, "local_dir = {:?}", t.local_dir.display().to_string());
        let _ = writeln!(out, "s3_endpoint = {:?}", t.s3_endpoint);
        let _ = writeln!(out, "s3_bucket = {:?}", t.s3_bucket);
        let _ = writeln!(out, "s3_region = {:?}", t.s3_region);
        let _ = writeln!(out, "s3_access_key_env = {:?}", t.s3_access_key_env);
        let _ = writeln!(out, "s3_secret_key_env = {:?}", t.s3_secret_key_env);
        let _ = writeln!(out, "link_ttl = \"{}\"", d(t.link_ttl));
        let _ = writeln!(out, "public_base_url = {:?}", t.public_base_url);
        out
    }
}

/// A compact duration, parseable by humantime: the largest exact unit (`20ms`, `30s`, `10m`,
/// `24h`, `30d`).
fn format_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(duration).to_string();
    }
    if total_ms == 0 {
        return "0s".to_string();
    }
    let hours = u128::from(HOUR);
    let units: [(u128, &str); 5] = [
        (u128::from(DAY), "d"),
        (hours, "h"),
        (u128::from(MIN), "m"),
        (u128::from(SEC), "s"),
        (1, "ms"),
    ];
    for (size, unit) in units {
        // Days only beyond three days: "48h" reads better than "2d".
        if unit == "d" && total_ms <= 3 * u128::from(DAY) {
            continue;
        }
        if total_ms.is_multiple_of(size) {
            return format!("{}{unit}", total_ms / size);
        }
    }
    format!("{total_ms}ms")
}

fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn json_as_toml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "\"null\"".to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(json_as_toml).collect();
            format!("[{}]", items.join(", "))
        }
        serde_json::Value::Object(map) if map.is_empty() => "{}".to_string(),
        serde_json::Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), json_as_toml(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Naming problems: setting, value, origin

/// Looks up merged values and their origins, to describe problems.
struct Origins<'a> {
    figment: &'a Figment,
    root: Option<Value>,
}

impl<'a> Origins<'a> {
    fn new(figment: &'a Figment) -> Self {
        Origins {
            figment,
            root: figment.find_value("").ok(),
        }
    }

    fn node(&self, path: &[String]) -> Option<&Value> {
        let mut current = self.root.as_ref()?;
        for segment in path {
            current = child(current, segment)?;
        }
        Some(current)
    }

    /// `periodic.1.every` → `periodic[1].every`.
    fn display_key(&self, path: &[String]) -> String {
        let mut out = String::new();
        let mut current = self.root.as_ref();
        for segment in path {
            if matches!(current, Some(Value::Array(..))) {
                out.push_str(&format!("[{segment}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(segment);
            }
            current = current.and_then(|c| child(c, segment));
        }
        out
    }

    /// The provider of the deepest value found along `path`.
    fn origin(&self, path: &[String]) -> Option<String> {
        (1..=path.len()).rev().find_map(|n| {
            let value = self.node(&path[..n])?;
            self.figment.get_metadata(value.tag()).map(describe_origin)
        })
    }

    fn value(&self, path: &[String]) -> Option<String> {
        let value = self.node(path)?;
        if is_url_key(&generic_key(path)) {
            return value.as_str().map(|url| format!("{:?}", mask_url(url)));
        }
        render_value(value)
    }

    fn problem(&self, path: &[String], show_value: bool, message: String) -> ConfigProblem {
        ConfigProblem {
            setting: Some(self.display_key(path)),
            value: if show_value { self.value(path) } else { None },
            origin: self.origin(path),
            message,
        }
    }

    fn convert(&self, error: figment::Error) -> ConfigError {
        let problems = error.into_iter().map(|e| self.convert_one(e)).collect();
        ConfigError { problems }
    }

    fn convert_one(&self, error: figment::Error) -> ConfigProblem {
        use figment::error::Kind;
        let mut path = error.path.clone();
        let with_hint = |message: String, path: &[String]| match hint(&generic_key(path)) {
            Some(hint) => format!("{message}; {hint}"),
            None => message,
        };
        let message = match &error.kind {
            Kind::UnknownField(field, expected) => {
                // figment usually has put the field on the path already.
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                if expected.is_empty() {
                    "is not a known setting".to_string()
                } else {
                    format!(
                        "is not a known setting: expected one of {}",
                        expected.join(", ")
                    )
                }
            }
            Kind::MissingField(field) => {
                if path.last().map(String::as_str) != Some(&**field) {
                    path.push(field.to_string());
                }
                with_hint("is missing".to_string(), &path)
            }
            Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected)
                if expected == "a duration" =>
            {
                with_hint(
                    "is not a valid duration: use a number and a unit, e.g. \"30s\", \"10m\" \
                     or \"100ms\""
                        .to_string(),
                    &path,
                )
            }
            Kind::InvalidType(_, expected) => {
                let expected = if expected.starts_with("struct ") {
                    "a table"
                } else {
                    expected.as_str()
                };
                with_hint(format!("has the wrong type: expected {expected}"), &path)
            }
            Kind::InvalidValue(_, expected) => {
                with_hint(format!("is not valid: expected {expected}"), &path)
            }
            Kind::UnknownVariant(_, expected) => {
                let expected: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
                format!("is not allowed: expected one of {}", expected.join(", "))
            }
            Kind::Message(message) => message.clone(),
            other => other.to_string(),
        };
        // A key an [[admins]] or [[panels]] entry does not have may be a token written in the
        // file by mistake: never echo it.
        let hide_value = matches!(path.first().map(String::as_str), Some("admins" | "panels"))
            && matches!(error.kind, Kind::UnknownField(..));
        let mut problem = self.problem(&path, !hide_value, message);
        if problem.value.is_none() && !hide_value {
            problem.value = actual_value(&error.kind, &path);
        }
        if problem.origin.is_none() {
            problem.origin = error.metadata.as_ref().map(describe_origin);
        }
        if path.is_empty() {
            problem.setting = None;
        }
        problem
    }
}

fn child<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Dict(_, dict) => dict.get(segment),
        Value::Array(_, items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

/// `queues.panel.concurrency` → `queues.*.concurrency`; `periodic.1.every` → `periodic.every`.
fn generic_key(path: &[String]) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match parts.first() {
        Some(&"queues") if parts.len() > 1 => parts[1] = "*",
        Some(&("periodic" | "panels" | "plans"))
            if parts.len() > 1 && parts[1].parse::<usize>().is_ok() =>
        {
            parts.remove(1);
        }
        _ => {}
    }
    parts.join(".")
}

/// Settings holding URLs: their values are shown with any password masked.
fn is_url_key(generic_key: &str) -> bool {
    matches!(
        generic_key,
        "database.url" | "panels.url" | "telegram.api_url" | "discord.api_url"
    )
}

fn describe_origin(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None => metadata.name.to_string(),
    }
}

/// The value as written; `None` for tables (too long to repeat).
fn render_value(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(..) => match (value.to_i128(), value.to_u128(), value.to_f64()) {
            (Some(n), _, _) => n.to_string(),
            (None, Some(n), _) => n.to_string(),
            (None, None, Some(x)) => x.to_string(),
            (None, None, None) => "?".to_string(),
        },
        Value::Empty(..) => "none".to_string(),
        Value::Array(_, items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| render_value(v).unwrap_or_else(|| "{…}".to_string()))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(..) => return None,
    })
}

fn actual_value(kind: &figment::error::Kind, path: &[String]) -> Option<String> {
    use figment::error::{Actual, Kind};
    if is_url_key(&generic_key(path)) {
        return None;
    }
    let actual = match kind {
        Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _) => actual,
        _ => return None,
    };
    Some(match actual {
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(x) => x.to_string(),
        Actual::Char(c) => format!("{c:?}"),
        Actual::Str(s) => format!("{s:?}"),
        _ => return None,
    })
}

struct Checker<'a, 'f> {
    origins: &'a Origins<'f>,
    problems: Vec<ConfigProblem>,
}

impl Checker<'_, '_> {
    fn problem(&mut self, key: &str, show_value: bool, message: String) {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        self.problems
            .push(self.origins.problem(&path, show_value, message));
    }

    fn duration(&mut self, key: &str, value: Duration, allowed: Allowed) {
        if let Allowed::Dur(min, max) = allowed
            && (value < min.value || value > max.value)
        {
            self.problem(key, true, format!("is out of range: {allowed}"));
        }
    }

    fn int(&mut self, key: &str, value: i64, allowed: Allowed) {
        if let Allowed::Int(min, max) = allowed
            && !(min..=max).contains(&value)
        {
            self.problem(key, true, format!("is out of range: {allowed}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const NO_ENV: [(&str, &str); 0] = [];

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    fn load(
        file: Option<&tempfile::NamedTempFile>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Settings::load_with_env(file.map(|f| f.path()), env.iter().copied(), &flags)
    }

    fn load_err(
        file: Option<&tempfile::NamedTempFile>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> String {
        match load(file, env, flags) {
            Ok(settings) => panic!("expected an error, got {settings:#?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_panel_gets_a_usage_sync_unless_periodic_has_one() {
        let mut s = Settings::load_with_env(None, NO_ENV, &[]).expect("defaults");
        let panel = |name: &str| PanelSettings {
            name: name.into(),
            kind: PanelKind::SUi,
            url: BaseUrl::parse("http://127.0.0.1:2095/app/").expect("url"),
            token_env: Some("JOBQ_PANEL_TOKEN".into()),
            login_user_env: None,
            login_password_env: None,
            concurrency: 4,
            requests_per_second: None,
            timeout: Duration::from_secs(15),
            sync_every: Duration::from_secs(300),
        };
        s.panels = vec![panel("de-1"), panel("nl-1")];
        s.periodic = vec![PeriodicSettings {
            name: "sync-nl-often".into(),
            kind: "sync_usage".into(),
            every: Duration::from_secs(60),
            payload: serde_json::json!({"panel": "nl-1"}),
            queue: None,
            priority: None,
        }];
        let jobs = s.periodic_jobs();
        let names: Vec<&str> = jobs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sync-nl-often", "sync-de-1"]);
        assert_eq!(jobs[1].payload, serde_json::json!({"panel": "de-1"}));
        assert_eq!(jobs[1].every, Duration::from_secs(300));
    }

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
    fn example_toml_loads() {
        let file = config_file(include_str!("../../config/example.toml"));
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
        // The shape of issue 3's example.
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

    const PANEL_AND_PLAN: &str = r#"
        [[panels]]
        name = "main"
        kind = "s-ui"
        url = "http://127.0.0.1:2095/app"
        token_env = "PANEL_MAIN_TOKEN"

        [[panels]]
        name = "backup"
        kind = "s-ui"
        url = "https://backup.example.com:8443/secret-path/"
        login_user_env = "BACKUP_USER"
        login_password_env = "BACKUP_PASS"
        concurrency = 2
        requests_per_second = 0.5
        timeout = "30s"

        [[plans]]
        name = "basic"
        volume_gb = 10
        days = 30
        inbounds = [1]

        [[plans]]
        name = "unlimited"
        volume_gb = 0
        days = 365
        inbounds = [1, 3]
        reset_usage_on_renew = false
    "#;

    #[test]
    fn panels_and_plans_load_with_defaults_and_lookups() {
        let none = load(None, &[], &[]).expect("defaults");
        assert!(none.panels.is_empty() && none.plans.is_empty());
        assert!(none.panel("main").is_none() && none.plan("basic").is_none());
        assert_eq!(none.telegram.api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(none.discord.api_url.as_str(), "https://discord.com/");

        let file = config_file(PANEL_AND_PLAN);
        let s = load(Some(&file), &[], &[]).expect("loads");
        let main = s.panel("main").expect("main");
        // The final slash is added, so API paths join below the web path.
        assert_eq!(main.url.as_str(), "http://127.0.0.1:2095/app/");
        assert_eq!(
            main.url.join("apiv2/clients").expect("joins").as_str(),
            "http://127.0.0.1:2095/app/apiv2/clients"
        );
        assert_eq!(main.concurrency, 4, "default concurrency");
        assert_eq!(main.requests_per_second, None);
        assert_eq!(main.timeout, Duration::from_secs(15), "default timeout");
        let backup = s.panel("backup").expect("backup");
        assert_eq!(backup.concurrency, 2);
        assert_eq!(backup.requests_per_second, Some(0.5));
        assert_eq!(backup.timeout, Duration::from_secs(30));
        assert_eq!(backup.login_user_env.as_deref(), Some("BACKUP_USER"));
        assert!(s.panel("nope").is_none());

        let unlimited = s.plan("unlimited").expect("unlimited");
        assert_eq!(unlimited.volume_bytes(), 0);
        assert_eq!(unlimited.duration(), Duration::from_secs(365 * 86_400));
        assert!(!unlimited.reset_usage_on_renew);
        assert!(s.plan("basic").expect("basic").reset_usage_on_renew);
        assert!(s.plan("nope").is_none());

        // describe lists them, and its output loads to the same settings.
        let text = s.describe();
        assert!(text.contains("[[panels]]"), "{text}");
        assert!(
            text.contains("login_password_env = \"BACKUP_PASS\""),
            "{text}"
        );
        assert!(text.contains("inbounds = [1, 3]"), "{text}");
        let again = config_file(&text);
        assert_eq!(load(Some(&again), &[], &[]).expect("reloads"), s);
    }

    #[test]
    fn chat_api_urls_come_from_file_and_environment() {
        let file = config_file("[telegram]\napi_url = \"http://127.0.0.1:8081\"\n");
        let s = load(
            Some(&file),
            &[("JOBQ_DISCORD_API_URL", "http://127.0.0.1:9000/fake")],
            &[],
        )
        .expect("loads");
        assert_eq!(s.telegram.api_url.as_str(), "http://127.0.0.1:8081/");
        assert_eq!(s.discord.api_url.as_str(), "http://127.0.0.1:9000/fake/");
        // Token variables are not settings: ignored here, read by the chat clients.
        let s = load(None, &[("JOBQ_TELEGRAM_TOKEN", "123:abc")], &[]).expect("loads");
        assert_eq!(s.telegram.api_url.as_str(), "https://api.telegram.org/");
        let err = load_err(None, &[("JOBQ_TELEGRAM_API_URL", "ftp://x.example")], &[]);
        assert!(err.contains("telegram.api_url"), "{err}");
        assert!(err.contains("JOBQ_TELEGRAM_API_URL"), "{err}");
    }

    #[test]
    fn bad_panels_are_refused_naming_the_setting() {
        let case = |body: &str| load_err(Some(&config_file(body)), &[], &[]);
        let panel = |extra: &str| {
            format!(
                "[[panels]]\nname = \"main\"\nkind = \"s-ui\"\nurl = \"http://p.example/app/\"\n{extra}\n"
            )
        };

        let err = case(&panel("token_env = \"T\"").replace("s-ui", "x-ui"));
        assert!(err.contains("panels[0].kind"), "{err}");
        assert!(err.contains("x-ui"), "{err}");
        assert!(err.contains("s-ui"), "{err}");

        for bad in [
            "127.0.0.1:2095/app/",
            "ftp://p.example/",
            "not a url",
            "http://p.example/?a=1",
        ] {
            let err = case(&panel("token_env = \"T\"").replace("http://p.example/app/", bad));
            assert!(err.contains("panels[0].url"), "{bad}: {err}");
        }
        let err = case(&panel("token_env = \"T\"").replace(
            "http://p.example/app/",
            "http://admin:hunter2@p.example/app/",
        ));
        assert!(err.contains("panels[0].url"), "{err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");

        let err = case(&panel(""));
        assert!(err.contains("panels[0]"), "{err}");
        assert!(err.contains("no credentials"), "{err}");
        let err = case(&panel(
            "token_env = \"T\"\nlogin_user_env = \"U\"\nlogin_password_env = \"P\"",
        ));
        assert!(err.contains("panels[0].token_env"), "{err}");
        assert!(err.contains("not both"), "{err}");
        let err = case(&panel("login_user_env = \"U\""));
        assert!(err.contains("panels[0].login_password_env"), "{err}");
        let err = case(&panel("token_env = \"my-token\""));
        assert!(err.contains("panels[0].token_env"), "{err}");
        let err = case(&panel("token_env = \"T\"\nconcurrency = 65"));
        assert!(
            err.contains("panels[0].concurrency = 65 is out of range: allowed 1 to 64"),
            "{err}"
        );
        let err = case(&panel("token_env = \"T\"\nconcurrency = 0"));
        assert!(err.contains("panels[0].concurrency"), "{err}");
        for rps in ["0", "-1", "0.0"] {
            let err = case(&panel(&format!(
                "token_env = \"T\"\nrequests_per_second = {rps}"
            )));
            assert!(
                err.contains("panels[0].requests_per_second"),
                "{rps}: {err}"
            );
        }
        let err = case(&panel("token_env = \"T\"\ntimeout = \"100ms\""));
        assert!(err.contains("panels[0].timeout"), "{err}");
        assert!(err.contains("allowed 1s to 10m"), "{err}");
        // A token written into the file by mistake is refused without being echoed.
        let err = case(&panel("token = \"s3cr3t-token-value\""));
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains("s3cr3t"), "the token leaked: {err}");

        let twice = format!(
            "{}{}",
            panel("token_env = \"T\""),
            panel("token_env = \"T\"")
        );
        let err = case(&twice);
        assert!(err.contains("panels[1].name"), "{err}");
        assert!(err.contains("unique"), "{err}");
        let err = case(&panel("token_env = \"T\"").replace("\"main\"", "\"Main Panel\""));
        assert!(err.contains("panels[0].name"), "{err}");
    }

    #[test]
    fn bad_plans_are_refused_naming_the_setting() {
        let case = |body: &str| load_err(Some(&config_file(body)), &[], &[]);
        let plan = |volume: &str, days: &str, inbounds: &str| {
            format!(
                "[[plans]]\nname = \"basic\"\nvolume_gb = {volume}\ndays = {days}\ninbounds = {inbounds}\n"
            )
        };
        let err = case(&plan("-1", "30", "[1]"));
        assert!(
            err.contains("plans[0].volume_gb = -1 is out of range"),
            "{err}"
        );
        let err = case(&plan("10", "0", "[1]"));
        assert!(
            err.contains("plans[0].days = 0 is out of range: allowed 1 to 3650"),
            "{err}"
        );
        let err = case(&plan("10", "3651", "[1]"));
        assert!(err.contains("plans[0].days"), "{err}");
        let err = case(&plan("10", "30", "[]"));
        assert!(err.contains("plans[0].inbounds"), "{err}");
        assert!(err.contains("empty"), "{err}");
        let err = case(&plan("10", "30", "[1, 0, -2, 1]"));
        assert!(err.contains("plans[0].inbounds[1] = 0"), "{err}");
        assert!(err.contains("plans[0].inbounds[2] = -2"), "{err}");
        assert!(
            err.contains("plans[0].inbounds[3] = 1 is listed twice"),
            "{err}"
        );
        let err = case(&format!(
            "{}{}",
            plan("1", "1", "[1]"),
            plan("2", "2", "[2]")
        ));
        assert!(err.contains("plans[1].name"), "{err}");
        let err = case("[[plans]]\nname = \"basic\"\ndays = 30\ninbounds = [1]\n");
        assert!(err.contains("plans[0].volume_gb"), "{err}");
        assert!(err.contains("missing"), "{err}");
        // Zero volume is unlimited, not an error.
        let s = load(Some(&config_file(&plan("0", "30", "[7]"))), &[], &[]).expect("unlimited");
        assert_eq!(s.plans[0].volume_bytes(), 0);
    }

    #[test]
    fn panel_credentials_come_from_the_environment_and_never_show() {
        let file = config_file(PANEL_AND_PLAN);
        let s = load(Some(&file), &[], &[]).expect("loads");
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let creds = s
            .panel_credentials_from(env(&[
                ("PANEL_MAIN_TOKEN", "tok-0123456789abcdef"),
                ("BACKUP_USER", "backup-admin"),
                ("BACKUP_PASS", "backup-password-42"),
            ]))
            .expect("credentials");
        match creds.get("main") {
            Some(PanelAuth::Token(t)) => assert_eq!(t.expose_secret(), "tok-0123456789abcdef"),
            other => panic!("main: {other:?}"),
        }
        match creds.get("backup") {
            Some(PanelAuth::Login { user, password }) => {
                assert_eq!(user.expose_secret(), "backup-admin");
                assert_eq!(password.expose_secret(), "backup-password-42");
            }
            other => panic!("backup: {other:?}"),
        }
        let debug = format!("{creds:?}");
        for secret in ["tok-0123", "backup-admin", "backup-password"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }

        let err = s
            .panel_credentials_from(env(&[("BACKUP_USER", "backup-admin"), ("BACKUP_PASS", "")]))
            .expect_err("missing variables")
            .to_string();
        assert!(err.contains("panels[0].token_env"), "{err}");
        assert!(err.contains("PANEL_MAIN_TOKEN"), "{err}");
        assert!(err.contains("panel main"), "{err}");
        assert!(err.contains("panels[1].login_password_env"), "{err}");
        assert!(err.contains("BACKUP_PASS"), "{err}");
        assert!(!err.contains("backup-admin"), "a value leaked: {err}");

        let none = load(None, &[], &[]).expect("defaults");
        assert!(
            none.panel_credentials_from(|_| None)
                .expect("none")
                .is_empty()
        );
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
    fn out_of_range_names_setting_value_origin_and_range() {
        let file = config_file("[worker]\nconcurrency = 0\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(
            err.contains("worker.concurrency = 0 is out of range: allowed 1 to 10000"),
            "{err}"
        );
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let err = load_err(None, &[("JOBQ_WORKER_LEASE", "2h")], &[]);
        assert!(
            err.contains("worker.lease = \"2h\" is out of range: allowed 1s to 1h"),
            "{err}"
        );
        assert!(err.contains("JOBQ_WORKER_LEASE"), "{err}");

        let err = load_err(None, &[], &[("database.max_connections", "5000")]);
        assert!(
            err.contains("database.max_connections = 5000 is out of range: allowed 1 to 1000"),
            "{err}"
        );
        assert!(err.contains("command-line override"), "{err}");

        let err = load_err(None, &[], &[("worker.concurrency", "-1")]);
        assert!(err.contains("worker.concurrency = -1"), "{err}");
        assert!(err.contains("allowed 1 to 10000"), "{err}");
    }

    #[test]
    fn several_problems_are_all_reported() {
        let file = config_file("[worker]\nconcurrency = 0\npoll_interval = \"1ms\"\n");
        let err = load(Some(&file), &[], &[]).expect_err("invalid");
        assert_eq!(err.problems().len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains("worker.concurrency"), "{text}");
        assert!(text.contains("worker.poll_interval"), "{text}");
    }

    #[test]
    fn malformed_duration_names_key_and_env_var() {
        let err = load_err(None, &[("JOBQ_WORKER_SHUTDOWN_GRACE", "3 parsecs")], &[]);
        assert!(err.contains("worker.shutdown_grace"), "{err}");
        assert!(err.contains("\"3 parsecs\""), "{err}");
        assert!(err.contains("JOBQ_WORKER_SHUTDOWN_GRACE"), "{err}");
        assert!(err.contains("not a valid duration"), "{err}");

        let err = load_err(None, &[("JOBQ_WORKER_CONCURRENCY", "many")], &[]);
        assert!(err.contains("worker.concurrency = \"many\""), "{err}");
        assert!(err.contains("JOBQ_WORKER_CONCURRENCY"), "{err}");

        let file = config_file("[worker]\nlease = 30\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("worker.lease = 30"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_keys_rejected() {
        let file = config_file("[wroker]\nconcurrency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("wroker"), "{err}");
        assert!(err.contains("is not a known setting"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let file = config_file("[worker]\nconcurency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(
            err.contains("worker.concurency = 4 is not a known setting"),
            "{err}"
        );
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let file = config_file("[queues.panel]\nconcurrency = 4\nweight = 2\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("queues.panel.weight"), "{err}");

        let err = load_err(None, &[], &[("worker.concurency", "4")]);
        assert!(err.contains("worker.concurency"), "{err}");
        assert!(err.contains("command-line override"), "{err}");

        let err = load_err(None, &[], &[("worker..x", "4")]);
        assert!(err.contains("worker..x"), "{err}");
    }

    #[test]
    fn bad_enum_value_lists_allowed() {
        let err = load_err(None, &[("JOBQ_LOG_FORMAT", "xml")], &[]);
        assert!(err.contains("log.format = \"xml\""), "{err}");
        assert!(err.contains("\"human\", \"json\""), "{err}");
        assert!(err.contains("JOBQ_LOG_FORMAT"), "{err}");
    }

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

    #[test]
    fn duplicate_periodic_names_rejected() {
        let file = config_file(
            r#"
            [[periodic]]
            name = "sync-main"
            kind = "sync_usage"
            every = "10m"

            [[periodic]]
            name = "sync-main"
            kind = "sync_usage"
            every = "1h"
            "#,
        );
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("periodic[1].name = \"sync-main\""), "{err}");
        assert!(err.contains("unique"), "{err}");
    }

    #[test]
    fn periodic_entries_checked() {
        let file = config_file(
            r#"
            [[periodic]]
            name = "Bad Name"
            kind = ""
            every = "500ms"
            queue = "UPPER"
            priority = 500

            [[periodic]]
            name = "no-kind"
            every = "1m"
            "#,
        );
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("periodic[1].kind is missing"), "{err}");

        let file = config_file(
            r#"
            [[periodic]]
            name = "Bad Name"
            kind = ""
            every = "500ms"
            queue = "UPPER"
            priority = 500
            "#,
        );
        let err = load(Some(&file), &[], &[]).expect_err("invalid");
        assert_eq!(err.problems().len(), 5, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("periodic[0].every = \"500ms\" is out of range"),
            "{text}"
        );
        assert!(
            text.contains("periodic[0].priority = 500 is out of range: allowed -100 to 100"),
            "{text}"
        );
    }

    #[test]
    fn stats_retention_at_least_a_day() {
        let err = load_err(None, &[], &[("maintenance.stats_retention", "12h")]);
        assert!(
            err.contains("maintenance.stats_retention = \"12h\" is out of range: allowed 24h"),
            "{err}"
        );
        let s = load(None, &[], &[("maintenance.stats_retention", "24h")]).expect("24h is fine");
        assert_eq!(s.maintenance.stats_retention, Duration::from_secs(86_400));
    }

    #[test]
    fn heartbeat_shorter_than_lease() {
        let err = load_err(None, &[], &[("worker.heartbeat_interval", "30s")]);
        assert!(err.contains("worker.heartbeat_interval"), "{err}");
        assert!(err.contains("worker.lease"), "{err}");
    }

    #[test]
    fn bad_queue_names_rejected() {
        let err = load_err(None, &[("JOBQ_WORKER_QUEUES", "default,Panel")], &[]);
        assert!(err.contains("worker.queues[1] = \"Panel\""), "{err}");
        let file = config_file("[queues.\"pa nel\"]\nconcurrency = 2\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(
            err.contains("queues.pa nel is not a valid queue name"),
            "{err}"
        );
    }

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
    fn missing_config_file_names_path() {
        let path = Path::new("/nonexistent/jobq-config.toml");
        let err = Settings::load_with_env(Some(path), NO_ENV, &[]).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/jobq-config.toml"),
            "{err}"
        );
    }

    #[test]
    fn invalid_toml_names_file() {
        let file = config_file("[worker\nconcurrency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("not valid TOML"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }

    #[test]
    fn describe_lists_effective_values() {
        let file = config_file(include_str!("../../config/example.toml"));
        let s = load(Some(&file), &[], &[("worker.concurrency", "7")]).expect("loads");
        let text = s.describe();
        assert!(text.contains("concurrency = 7"), "{text}");
        assert!(text.contains("[queues.panel]"), "{text}");
        assert!(text.contains("stats_retention = \"48h\""), "{text}");
        assert!(text.contains("payload = { panel = \"main\" }"), "{text}");
        // The listing is itself a valid config file giving the same settings.
        let again = config_file(&text);
        let reloaded = load(Some(&again), &[], &[]).expect("describe output loads");
        assert_eq!(reloaded, s);
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

    #[test]
    fn admins_checked_and_tokens_read_from_the_environment() {
        let file = config_file(
            "[[admins]]\nname = \"alice\"\ntoken_env = \"TOKEN_ALICE\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"TOKEN_BOB\"\n",
        );
        let s = load(Some(&file), &[], &[]).expect("admins load");
        assert_eq!(s.admins.len(), 2);
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let tokens = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "alice-token-0123456789"),
                ("TOKEN_BOB", "bob-token-0123456789"),
                ("JOBQ_ADMIN_TOKEN", "single-token-0123456789"),
            ]))
            .expect("tokens");
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);
        // Debug never shows a token.
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("alice-token"), "{debug}");
        assert!(!debug.contains("single-token"), "{debug}");

        let err = s
            .admin_tokens_from(env(&[("TOKEN_ALICE", "alice-token-0123456789")]))
            .expect_err("bob's variable unset")
            .to_string();
        assert!(err.contains("admins[1].token_env"), "{err}");
        assert!(err.contains("TOKEN_BOB"), "{err}");

        let err = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "short"),
                ("TOKEN_BOB", "bob-token-0123456789"),
            ]))
            .expect_err("weak token")
            .to_string();
        assert!(err.contains("TOKEN_ALICE"), "{err}");
        assert!(err.contains("too weak"), "{err}");
        assert!(!err.contains("short"), "the token leaked: {err}");

        let err = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "same-token-0123456789"),
                ("TOKEN_BOB", "same-token-0123456789"),
            ]))
            .expect_err("shared token")
            .to_string();
        assert!(err.contains("same token"), "{err}");
        assert!(
            !err.contains("same-token-0123456789"),
            "the token leaked: {err}"
        );

        let none = load(None, &[], &[]).expect("defaults");
        assert!(
            none.admin_tokens_from(|_| None)
                .expect("no admins")
                .is_empty()
        );

        let bad = config_file(
            "[[admins]]\nname = \"Alice Smith\"\ntoken_env = \"token-alice\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"B\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"C\"\n",
        );
        let err = load_err(Some(&bad), &[], &[]);
        assert!(err.contains("admins[0].name"), "{err}");
        assert!(err.contains("admins[0].token_env"), "{err}");
        assert!(err.contains("admins[2].name"), "{err}");
        let unknown = config_file("[[admins]]\nname = \"a\"\ntoken = \"secret\"\n");
        let err = load_err(Some(&unknown), &[], &[]);
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains("secret"), "the token leaked: {err}");
    }

    #[test]
    fn durations_format_compactly() {
        let f = |ms: u64| format_duration(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(20), "20ms");
        assert_eq!(f(30_000), "30s");
        assert_eq!(f(600_000), "10m");
        assert_eq!(f(DAY), "24h");
        assert_eq!(f(2 * DAY), "48h");
        assert_eq!(f(30 * DAY), "30d");
        assert_eq!(f(1_500), "1500ms");
    }

    #[test]
    fn transcripts_default_to_the_local_store_and_s3_must_be_complete() {
        let s = load(None, &[], &[]).expect("defaults");
        assert_eq!(s.transcripts.store, TranscriptStoreKind::Local);
        assert_eq!(s.transcripts.local_dir, PathBuf::from("data/transcripts"));
        assert_eq!(s.transcripts.link_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.transcript_base_url(), "http://127.0.0.1:8080");

        // Never a silent fallback to local files: each missing S3 setting is named.
        let err = load_err(None, &[("JOBQ_TRANSCRIPTS_STORE", "s3")], &[]);
        for missing in [
            "transcripts.s3_bucket",
            "transcripts.s3_access_key_env",
            "transcripts.s3_secret_key_env",
        ] {
            assert!(err.contains(missing), "{missing}: {err}");
        }
        let file = config_file(
            "[transcripts]\nstore = \"s3\"\ns3_bucket = \"b\"\ns3_endpoint = \"ftp://x\"\n\
             s3_access_key_env = \"lower\"\ns3_secret_key_env = \"S3_SECRET\"\nlink_ttl = \"8d\"\n",
        );
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("transcripts.s3_endpoint"), "{err}");
        assert!(err.contains("transcripts.s3_access_key_env"), "{err}");
        assert!(
            err.contains("transcripts.link_ttl") && err.contains("7d"),
            "{err}"
        );

        let file = config_file(
            "[transcripts]\nstore = \"s3\"\ns3_bucket = \"b\"\n\
             s3_access_key_env = \"S3_ACCESS\"\ns3_secret_key_env = \"S3_SECRET\"\n",
        );
        let s = load(Some(&file), &[], &[]).expect("complete S3 settings");
        let err = s
            .transcript_s3_credentials_from(|name| (name == "S3_ACCESS").then(|| "AK".into()))
            .expect_err("secret unset")
            .to_string();
        assert!(err.contains("transcripts.s3_secret_key_env") && err.contains("`S3_SECRET`"));
        assert!(!err.contains("s3_access_key_env"), "{err}");
        let credentials = s
            .transcript_s3_credentials_from(|_| Some("value".into()))
            .expect("both set");
        assert!(
            !format!("{credentials:?}").contains("value"),
            "secrets redacted"
        );
    }

    #[test]
    fn transcript_links_use_the_first_base_url_given() {
        let s = load(
            None,
            &[
                ("JOBQ_WEB_PUBLIC_BASE_URL", "https://admin.example"),
                ("JOBQ_TRANSCRIPTS_PUBLIC_BASE_URL", "https://shop.example/"),
            ],
            &[],
        )
        .expect("loads");
        assert_eq!(s.transcript_base_url(), "https://shop.example");
        let s = load(
            None,
            &[("JOBQ_WEB_PUBLIC_BASE_URL", "https://admin.example")],
            &[],
        )
        .expect("loads");
        assert_eq!(s.transcript_base_url(), "https://admin.example");
    }
}
