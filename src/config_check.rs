//! `jobq config check`: the configuration parses and is in range (else `Settings::load` has
//! already said what is wrong), what a worker checks at start passes (the log filter, every
//! periodic job's kind and payload, each naming a configured panel), and what it needs from
//! the environment is there: panel credentials, the secret key, the bot tokens, the S3
//! credentials. Nothing is contacted (see `jobq panels check` for that) and nothing is
//! created; no secret is printed.

use crate::output::say;
use std::path::Path;

use jobs::configuration::{Backend, Settings, TranscriptStoreKind};
use jobs::secret_key::{KEY_FILE_NAME, SecretKey};
use serde::Serialize;

/// One thing checked.
#[derive(Debug, Serialize)]
struct Check {
    what: &'static str,
    status: Status,
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    /// Works, but something will not (e.g. DMs to Discord users without its token).
    Warn,
    /// A worker or bot would refuse to start, or every job of a kind would fail.
    Error,
}

pub fn run(config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let settings = crate::startup::settings(config, &[])?;
    let checks = checks(&settings);
    let failed = checks.iter().filter(|c| c.status == Status::Error).count();
    if json {
        let report = serde_json::json!({
            "ok": failed == 0,
            "database": settings.database.url.to_string(),
            "checks": checks,
        });
        say!("{report}");
    } else {
        say!("configuration is valid\n{}", settings.describe());
        say!("environment:");
        for check in &checks {
            let mark = match check.status {
                Status::Ok => "ok   ",
                Status::Warn => "warn ",
                Status::Error => "ERROR",
            };
            say!("  {mark} {}: {}", check.what, check.detail);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} environment check(s) failed: see above");
    }
    Ok(())
}

fn checks(settings: &Settings) -> Vec<Check> {
    vec![
        log_filter(settings),
        periodic_jobs(settings),
        panel_credentials(settings),
        secret_key(settings),
        chat_tokens(settings),
        transcript_store(settings),
        admins(settings),
    ]
}

fn check(what: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        what,
        status,
        detail: detail.into(),
    }
}

fn log_filter(settings: &Settings) -> Check {
    const WHAT: &str = "log filter";
    match crate::telemetry::filter(&settings.log) {
        Ok(_) => check(WHAT, Status::Ok, format!("{:?}", settings.log.filter)),
        Err(error) => check(WHAT, Status::Error, error.to_string()),
    }
}

/// The periodic jobs as a worker builds them at start (their kinds known, their payloads
/// parsed), and every panel they name configured: else each period's job would fail.
fn periodic_jobs(settings: &Settings) -> Check {
    const WHAT: &str = "periodic jobs";
    let jobs = settings.periodic_jobs();
    // The kinds a worker knows without `--test-kinds`: the product's.
    let mut registry = workers::handler::Registry::new();
    registry.know(jobs::kinds::specs());
    if let Err(error) = workers::periodic::Periodic::new(&jobs, &registry) {
        return check(WHAT, Status::Error, error.to_string());
    }
    if let Err(error) = crate::startup::periodic_panels(settings) {
        return check(WHAT, Status::Error, error.to_string());
    }
    check(WHAT, Status::Ok, format!("{} valid", jobs.len()))
}

fn panel_credentials(settings: &Settings) -> Check {
    const WHAT: &str = "panel credentials";
    if settings.panels.is_empty() {
        return check(
            WHAT,
            Status::Warn,
            "no [[panels]]: provision, expiry and sync jobs will fail",
        );
    }
    match settings.panel_credentials() {
        Ok(found) => check(
            WHAT,
            Status::Ok,
            format!("set for {} panel(s)", found.len()),
        ),
        Err(error) => check(WHAT, Status::Error, error.to_string()),
    }
}

/// Where the key would come from, without generating one.
fn secret_key(settings: &Settings) -> Check {
    const WHAT: &str = "secret key (JOBQ_SECRET_KEY)";
    if let Ok(value) = std::env::var(jobs::secret_key::SECRET_KEY_ENV) {
        return match SecretKey::parse(&value) {
            Ok(_) => check(WHAT, Status::Ok, "set in the environment"),
            Err(reason) => check(WHAT, Status::Error, format!("JOBQ_SECRET_KEY {reason}")),
        };
    }
    let needed = !settings.panels.is_empty();
    match (
        settings.database.url.backend(),
        settings.database.url.sqlite_path(),
    ) {
        (Backend::Sqlite, Some(db_file)) => {
            let dir = db_file.parent().filter(|d| !d.as_os_str().is_empty());
            let file = dir.unwrap_or_else(|| Path::new(".")).join(KEY_FILE_NAME);
            if file.exists() {
                check(WHAT, Status::Ok, format!("key file {}", file.display()))
            } else {
                check(
                    WHAT,
                    Status::Ok,
                    format!("not set: generated at {} on first use", file.display()),
                )
            }
        }
        _ if needed => check(
            WHAT,
            Status::Error,
            "not set, and there is no SQLite data directory to keep a generated one in: set \
             JOBQ_SECRET_KEY (the same on every machine) for [[panels]]",
        ),
        _ => check(
            WHAT,
            Status::Warn,
            "not set: needed once [[panels]] are configured",
        ),
    }
}

fn chat_tokens(settings: &Settings) -> Check {
    const WHAT: &str = "bot tokens";
    match workers::chat::ChatClients::from_env(settings) {
        Err(error) => check(WHAT, Status::Error, error.to_string()),
        Ok(clients) => {
            let mut missing = Vec::new();
            for (platform, var) in [
                (
                    jobs::kinds::Platform::Telegram,
                    jobs::bot_tokens::TELEGRAM_TOKEN_ENV,
                ),
                (
                    jobs::kinds::Platform::Discord,
                    jobs::bot_tokens::DISCORD_TOKEN_ENV,
                ),
            ] {
                if clients.get(platform).is_err() {
                    missing.push(var);
                }
            }
            match missing.as_slice() {
                [] => check(
                    WHAT,
                    Status::Ok,
                    "Telegram and Discord tokens set and well-formed",
                ),
                vars => check(
                    WHAT,
                    Status::Warn,
                    format!(
                        "{} not set: DMs (and the bot) on that platform will fail",
                        vars.join(", ")
                    ),
                ),
            }
        }
    }
}

fn transcript_store(settings: &Settings) -> Check {
    const WHAT: &str = "transcript store";
    match workers::transcripts::Transcripts::from_settings(settings, None) {
        Err(error) => check(WHAT, Status::Error, error.to_string()),
        Ok(_) => match settings.transcripts.store {
            TranscriptStoreKind::S3 => check(WHAT, Status::Ok, "S3 settings and credentials set"),
            _ => check(
                WHAT,
                Status::Ok,
                format!(
                    "local files in {}",
                    settings.transcripts.local_dir.display()
                ),
            ),
        },
    }
}

fn admins(settings: &Settings) -> Check {
    const WHAT: &str = "admins to alert";
    match settings.admin_recipients().len() {
        0 => check(
            WHAT,
            Status::Warn,
            "none ([telegram] admins, [discord] admins): failed jobs are not reported by DM",
        ),
        n => check(WHAT, Status::Ok, format!("{n} admin(s) get failure alerts")),
    }
}
