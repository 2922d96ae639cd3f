//! Settings for the whole program, loaded in layers (later layers win):
//!
//! 1. `config/default.toml`, compiled into the binary: every setting has a default there;
//! 2. an optional config file (`--config` / `JOBQ_CONFIG`, read by the caller);
//! 3. environment variables `JOBQ_<SECTION>_<KEY>`, one for each key of a section of
//!    `config/default.toml` (`database`, `worker`, `maintenance`, `log`, `web`, `telegram`,
//!    `discord`, `bots` and `transcripts`; e.g. `JOBQ_DATABASE_URL` → `database.url`,
//!    `JOBQ_WORKER_SHUTDOWN_GRACE` → `worker.shutdown_grace`); any other `JOBQ_` variable is
//!    ignored, as is a variable naming a key its section does not have;
//! 4. overrides from command-line flags, as `("worker.concurrency", "8")` pairs.
//!
//! Durations are humantime strings ("100ms", "30s", "10m", "24h"). Every value is checked after
//! loading; a [`ConfigError`] names each bad setting, the value given, where it came from and
//! what is allowed. Unknown keys in a config file are errors. The database URL's password never
//! appears in `Debug`, `Display`, [`Settings::describe`] or error messages.

mod allowed;
mod checks;
#[cfg(test)]
mod database_url_tests;
mod describe;
mod env_keys;
mod layers;
mod load;
mod problems;
mod product;
mod secrets;
mod settings;
#[cfg(test)]
mod test_support;

pub use product::{
    BaseUrl, BotSettings, DiscordSettings, GIB, PanelKind, PanelSettings, PlanSettings,
    TelegramSettings, TranscriptSettings, TranscriptStoreKind,
};
pub(crate) use queue::settings::{ALLOWED_SCHEMES, mask_url};
pub use queue::settings::{
    Backend, ConfigError, ConfigProblem, DatabaseSettings, DatabaseUrl, SqliteSynchronous,
};
pub use secrets::{
    ADMIN_TOKEN_ENV, AdminToken, DEFAULT_ADMIN, MIN_TOKEN_LEN, PanelAuth, S3Credentials,
};
pub use settings::{
    AdminSettings, LogFormat, LogSettings, MaintenanceSettings, MetricsBind, PeriodicSettings,
    QueueSettings, Settings, WebSettings, WorkerSettings,
};

/// The built-in defaults: the first layer.
const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Prefix of the environment variables read as settings.
pub const ENV_PREFIX: &str = "JOBQ_";
