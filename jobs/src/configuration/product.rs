//! What the shop sells and talks to: VPN panels, plans, the chat APIs, bot limits and ticket
//! transcripts.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{PeriodicSettings, Settings};

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

    /// The plan's inbound ids a panel lacks, given the ids it has: a client attached to one of
    /// them would not work, so `panels check` reports them and provisioning refuses the plan.
    pub fn missing_inbounds(&self, present: &[u64]) -> Vec<i64> {
        self.inbounds
            .iter()
            .copied()
            .filter(|id| u64::try_from(*id).map_or(true, |id| !present.contains(&id)))
            .collect()
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

impl Settings {
    /// The `[[panels]]` entry named `name`.
    pub fn panel(&self, name: &str) -> Option<&PanelSettings> {
        self.panels.iter().find(|p| p.name == name)
    }

    /// The `[[plans]]` entry named `name`.
    pub fn plan(&self, name: &str) -> Option<&PlanSettings> {
        self.plans.iter().find(|p| p.name == name)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

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
