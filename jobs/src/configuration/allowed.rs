//! What each setting allows: ranges, name rules, and the hints error messages give.

use std::fmt;
use std::time::Duration;

use crate::configuration::ALLOWED_SCHEMES;
use crate::kinds::Name;

#[derive(Clone, Copy)]
pub(super) struct Bound {
    pub(super) value: Duration,
    label: &'static str,
}

const fn ms(n: u64, label: &'static str) -> Bound {
    Bound {
        value: Duration::from_millis(n),
        label,
    }
}

pub(super) const SEC: u64 = 1_000;
pub(super) const MIN: u64 = 60 * SEC;
pub(super) const HOUR: u64 = 60 * MIN;
pub(super) const DAY: u64 = 24 * HOUR;

#[derive(Clone, Copy)]
pub(super) enum Allowed {
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

pub(super) const DB_TIMEOUT: Allowed = Allowed::Dur(ms(100, "100ms"), ms(10 * MIN, "10m"));
pub(super) const CONCURRENCY: Allowed = Allowed::Int(1, 10_000);
pub(super) const MAX_CONNECTIONS: Allowed = Allowed::Int(1, 1_000);
pub(super) const BUSY_TIMEOUT: Allowed = Allowed::Dur(ms(0, "0s"), ms(10 * MIN, "10m"));
pub(super) const LEASE: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(HOUR, "1h"));
pub(super) const POLL_INTERVAL: Allowed = Allowed::Dur(ms(10, "10ms"), ms(5 * MIN, "5m"));
pub(super) const SHUTDOWN_GRACE: Allowed = Allowed::Dur(ms(0, "0s"), ms(HOUR, "1h"));
pub(super) const COMPLETION_INTERVAL: Allowed = Allowed::Dur(ms(1, "1ms"), ms(10 * SEC, "10s"));
pub(super) const HEARTBEAT_INTERVAL: Allowed = Allowed::Dur(ms(100, "100ms"), ms(5 * MIN, "5m"));
pub(super) const MAINTENANCE_INTERVAL: Allowed = Allowed::Dur(ms(100, "100ms"), ms(5 * MIN, "5m"));
pub(super) const COMPLETED_RETENTION: Allowed =
    Allowed::Dur(ms(MIN, "1m"), ms(3650 * DAY, "3650d"));
pub(super) const STATS_RETENTION: Allowed = Allowed::Dur(ms(DAY, "24h"), ms(3650 * DAY, "3650d"));
pub(super) const FAILURE_DIGEST_EVERY: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(DAY, "24h"));
pub(super) const PERIODIC_EVERY: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(3650 * DAY, "3650d"));
pub(super) const PRIORITY: Allowed = Allowed::Int(-100, 100);
pub(super) const PANEL_CONCURRENCY: Allowed = Allowed::Int(1, 64);
pub(super) const PANEL_TIMEOUT: Allowed = Allowed::Dur(ms(SEC, "1s"), ms(10 * MIN, "10m"));
pub(super) const PANEL_SYNC_EVERY: Allowed = Allowed::Dur(ms(10 * SEC, "10s"), ms(DAY, "24h"));
pub(super) const PLAN_VOLUME_GB: Allowed = Allowed::Int(0, 1_000_000);
pub(super) const PLAN_DAYS: Allowed = Allowed::Int(1, 3650);
pub(super) const COMMANDS_PER_MINUTE: Allowed = Allowed::Int(1, 10_000);
pub(super) const COMMAND_BURST: Allowed = Allowed::Int(1, 1000);
/// Inbound ids are S-UI's `uint` row ids.
pub(super) const INBOUND_ID: Allowed = Allowed::Int(1, u32::MAX as i64);
/// S3 refuses presigned links valid for longer than 7 days.
pub(super) const LINK_TTL: Allowed = Allowed::Dur(ms(MIN, "1m"), ms(7 * DAY, "7d"));
pub(super) const ENV_NAME_RULE: &str = "is not an environment variable name: use A-Z, 0-9 and _ (the secret \
                             itself never goes in a file)";

pub(super) const NAME_RULE: &str = "use 1 to 64 characters of a-z, 0-9, _ and -";

/// What is allowed for a setting, by its generic key (`queues.*.concurrency`, `periodic.every`).
pub(super) fn hint(generic_key: &str) -> Option<String> {
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
        "periodic.name" | "periodic.queue" | "admins.name" => return Some(NAME_RULE.to_string()),
        "panels.name" | "plans.name" => return Some(format!("use {}", Name::RULE)),
        "web.bind" => return Some("an ADDR:PORT such as \"127.0.0.1:8080\"".to_string()),
        _ => return None,
    };
    Some(allowed.to_string())
}

pub(super) fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Queue names must be names the queue accepts when a job is enqueued; periodic-job and admin
/// names follow the same rule, so that there is one rule to learn for what an operator names.
/// Panels and plans follow [`Name`]'s instead, the rule of the jobs that name them.
pub(super) fn valid_name(name: &str) -> bool {
    crate::job::is_valid_queue_name(name)
}
