//! The states a job moves through.

use std::fmt;
use std::str::FromStr;

/// `available`, `scheduled` (run_at in the future) and `retrying` (waiting for its backoff) are
/// the states a fetch may claim once `run_at` has come; `running` holds a lease; the rest are final
/// until an admin acts (`failed`) or the cleaner prunes them.
/// Ordered as a job moves through them (for listings by state).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Available,
    Scheduled,
    Running,
    Retrying,
    Completed,
    Failed,
    Cancelled,
    Discarded,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retrying,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Discarded => "discarded",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown job state '{0}': expected one of available, scheduled, running, retrying, completed, failed, cancelled, discarded"
)]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// An admin's repair of a job, and the states it may start from: the one rule the queue's SQL
/// and every surface (CLI, bots, dashboard) follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepairAction {
    /// Run again now (attempts topped up by one when spent).
    Retry,
    /// Give up on it: final, and its key is free again.
    Discard,
    /// Stop it before it runs. Not `running`: a handler already under way cannot be stopped
    /// from the database, and a cancelled row would free its key while the handler still runs.
    Cancel,
}

impl RepairAction {
    pub const ALL: [RepairAction; 3] = [
        RepairAction::Retry,
        RepairAction::Discard,
        RepairAction::Cancel,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RepairAction::Retry => "retry",
            RepairAction::Discard => "discard",
            RepairAction::Cancel => "cancel",
        }
    }

    pub fn parse(text: &str) -> Option<RepairAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The states this repair may start from.
    pub const fn allowed_from(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            RepairAction::Retry => &[Failed, Retrying, Scheduled, Cancelled, Discarded],
            RepairAction::Discard => &[Failed, Available, Scheduled, Retrying],
            RepairAction::Cancel => &[Available, Scheduled, Retrying],
        }
    }

    pub fn allows(self, state: JobState) -> bool {
        self.allowed_from().contains(&state)
    }

    /// The allowed states as an SQL list: `'failed', 'retrying', …`.
    pub fn sql_states(self) -> String {
        self.allowed_from()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_repair_touches_a_running_job_and_retry_leaves_completed_ones() {
        for action in RepairAction::ALL {
            assert!(!action.allows(JobState::Running), "{action:?}");
        }
        assert!(!RepairAction::Retry.allows(JobState::Completed));
        assert!(RepairAction::Discard.allows(JobState::Failed));
        assert_eq!(
            RepairAction::Cancel.sql_states(),
            "'available', 'scheduled', 'retrying'"
        );
        assert_eq!(RepairAction::parse("cancel"), Some(RepairAction::Cancel));
        assert_eq!(RepairAction::parse("delete"), None);
    }
}
