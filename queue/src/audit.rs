//! The audit log: every admin action from any surface (CLI, bots, dashboard), who, what, on
//! which jobs, when. Written in the same transaction as the change it records.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Who is acting and where; the driver adds the time and the count of jobs changed.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The OS user for the CLI, the admin's id for a bot, the named admin for the dashboard.
    pub actor: String,
    /// Where the action came from: `cli`, `dashboard`, or the name of a bot's platform.
    pub surface: &'static str,
    /// `retry`, `discard`, `cancel`, `pause`, `resume`, ...
    pub action: &'static str,
    /// The jobs (`jobs 1,2,3` or a filter) or the queue acted on.
    pub target: String,
}

impl AuditEntry {
    /// An action taken from the command line, by the OS user running it.
    pub fn cli(action: &'static str, target: impl Into<String>) -> Self {
        AuditEntry {
            actor: os_user(),
            surface: "cli",
            action,
            target: target.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub surface: String,
    pub action: String,
    pub target: String,
    pub count: i64,
}

impl AuditRecord {
    /// Whether the entry's target names job `id` (`jobs 17,18`, `job 17 (kind) …`). Only the
    /// ids a target lists count: past the first twenty of a large repair it says "and N more".
    pub fn names_job(&self, id: i64) -> bool {
        let id = id.to_string();
        self.target
            .split(|c: char| !c.is_ascii_digit())
            .any(|number| number == id)
    }
}

/// Which audit entries an admin means: every field narrows, `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// The name of the user running this process, as the shell knows it.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown-os-user".to_string())
}

/// How a set of job ids is written in the audit log: all of them up to a point, then a count.
pub fn describe_ids(ids: &[i64]) -> String {
    const SHOWN: usize = 20;
    let shown: Vec<String> = ids.iter().take(SHOWN).map(i64::to_string).collect();
    if ids.len() > SHOWN {
        format!("jobs {} and {} more", shown.join(","), ids.len() - SHOWN)
    } else {
        format!("jobs {}", shown.join(","))
    }
}
