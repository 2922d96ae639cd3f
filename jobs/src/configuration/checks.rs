//! The checks run on loaded settings: ranges, names, and settings that must agree.

use std::collections::BTreeSet;
use std::time::Duration;

use super::allowed::*;
use super::describe::format_duration;
use super::problems::Origins;
use super::{ConfigProblem, Settings, TranscriptStoreKind};
use crate::kinds::Name;

impl Settings {
    pub(super) fn check(&self, o: &Origins<'_>) -> Vec<ConfigProblem> {
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

        if let Some(problem) = address_problem(&self.web.public_base_url, "none") {
            c.problem("web.public_base_url", true, problem);
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
            if !valid_env_name(&a.token_env) {
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
        if let Some(problem) = address_problem(&t.public_base_url, "web.public_base_url") {
            c.problem("transcripts.public_base_url", true, problem);
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
        if let Some(problem) = address_problem(&t.s3_endpoint, "AWS") {
            c.problem("transcripts.s3_endpoint", true, problem);
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

    fn check_panels(&self, c: &mut Checker<'_, '_>) {
        let mut names = BTreeSet::new();
        for (i, p) in self.panels.iter().enumerate() {
            let key = |field: &str| format!("panels.{i}.{field}");
            if !Name::is_valid(&p.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid panel name: use {}", Name::RULE),
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
            if !Name::is_valid(&p.name) {
                c.problem(
                    &key("name"),
                    true,
                    format!("is not a valid plan name: use {}", Name::RULE),
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

/// What is wrong with an address setting (`""` meaning `empty_means`): not http(s), or holding
/// credentials (a user, a password or a query), which belong in the environment, never in a
/// URL that is logged and shown.
fn address_problem(url: &str, empty_means: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Some(format!(
            "is not an http:// or https:// address (or \"\" for {empty_means})"
        ));
    };
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Some(format!(
            "is not an http:// or https:// address (or \"\" for {empty_means})"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(
            "must not hold a user or password: credentials come from the environment".into(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Some("must not have a query or fragment: give the address only".into());
    }
    None
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
