//! [`Settings::describe`]: the effective settings as a config file.

use super::problems::mask_url_secrets;
use std::time::Duration;

use super::Settings;
use super::allowed::{DAY, HOUR, MIN, SEC};

impl Settings {
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
            w.metrics_bind
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default()
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
        let _ = writeln!(
            out,
            "public_base_url = {:?}",
            mask_url_secrets(&self.web.public_base_url)
        );
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
        let _ = writeln!(out, "s3_endpoint = {:?}", mask_url_secrets(&t.s3_endpoint));
        let _ = writeln!(out, "s3_bucket = {:?}", t.s3_bucket);
        let _ = writeln!(out, "s3_region = {:?}", t.s3_region);
        let _ = writeln!(out, "s3_access_key_env = {:?}", t.s3_access_key_env);
        let _ = writeln!(out, "s3_secret_key_env = {:?}", t.s3_secret_key_env);
        let _ = writeln!(out, "link_ttl = \"{}\"", d(t.link_ttl));
        let _ = writeln!(
            out,
            "public_base_url = {:?}",
            mask_url_secrets(&t.public_base_url)
        );
        out
    }
}

/// A compact duration, parseable by humantime: the largest exact unit (`20ms`, `30s`, `10m`,
/// `24h`, `30d`).
pub(super) fn format_duration(duration: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

    #[test]
    fn describe_lists_effective_values() {
        let file = config_file(include_str!("../../../config/example.toml"));
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
}
