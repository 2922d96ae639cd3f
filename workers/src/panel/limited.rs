//! The limits a `[[panels]]` entry sets, held across every worker process together through
//! the database ([`jobs::limits`]): at most `concurrency` HTTP requests to the panel at once,
//! and at most `requests_per_second`. The panel client passes every request it sends (logins
//! included) through [`PanelLimits::enter`], since one trait call may be several requests (an
//! edit reads, then writes).
//!
//! A request waits a little for room (a permit, then a turn); when none comes in time it fails
//! with [`PanelError::Throttled`], which the job turns into a snooze (rescheduled, no attempt
//! spent) instead of holding a worker slot.
//!
//! The configured rate is a ceiling: when the panel answers 429, [`PanelLimits::slowed`] makes
//! every worker wait out its Retry-After and halves the panel's rate, which then creeps back
//! toward the ceiling turn by turn (see [`jobs::limits::Limits::slow_down`]), so a rate set
//! higher than the panel allows settles at what it does allow. A permit is held for at most the call's timeout plus a margin, so a
//! worker that dies mid-call frees its permit soon after.

use std::time::Duration;

use jobs::configuration::PanelSettings;
use jobs::limits::{LimitError, Limits, Permit, Rate};

use super::PanelError;

/// How long a call waits for a permit or a turn before giving up as throttled.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Past the call's timeout, how long a permit outlives a worker that died holding it.
const HOLD_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PanelLimits {
    limits: Limits,
    /// `panel:<name>`: the name of its permits and of its rate.
    key: String,
    concurrency: u32,
    rate: Option<Rate>,
    hold: Duration,
}

impl PanelLimits {
    /// The limits of the panel `entry`, kept in `limits`' database.
    pub fn new(limits: Limits, entry: &PanelSettings) -> PanelLimits {
        PanelLimits {
            limits,
            key: format!("panel:{}", entry.name),
            concurrency: entry.concurrency.max(1),
            rate: entry.requests_per_second.map(Rate::per_second),
            hold: entry.timeout + HOLD_MARGIN,
        }
    }

    /// A permit and, when a rate is set, `requests` turns (one per request the permit will
    /// cover); or why not. Release the permit when the last answer is read.
    pub async fn enter(&self, requests: u32) -> Result<Permit, PanelError> {
        let permit = self
            .limits
            .acquire_within(&self.key, self.concurrency, self.hold, MAX_WAIT)
            .await
            .map_err(limit_error)?
            .ok_or(PanelError::Throttled {
                limit: "concurrency",
                retry_after: Duration::from_secs(1),
            })?;
        let Some(rate) = self.rate else {
            return Ok(permit);
        };
        for _ in 0..requests.max(1) {
            let turn = self
                .limits
                .take_within(&self.key, rate, MAX_WAIT)
                .await
                .map_err(limit_error);
            let wait = match turn {
                Ok(Ok(())) => continue,
                Ok(Err(wait)) => wait,
                Err(error) => {
                    let _ = permit.release().await;
                    return Err(error);
                }
            };
            let _ = permit.release().await;
            return Err(PanelError::Throttled {
                limit: "requests_per_second",
                retry_after: wait,
            });
        }
        Ok(permit)
    }

    /// The panel answered 429: every worker waits out `retry_after`, and the panel's rate
    /// drops below its ceiling. Without a configured rate there is nothing to lower: the job
    /// waits alone.
    pub async fn slowed(&self, retry_after: Duration) {
        let Some(rate) = self.rate else {
            return;
        };
        if let Err(error) = self.limits.slow_down(&self.key, rate, retry_after).await {
            tracing::warn!(%error, panel = %self.key, "could not record the panel's 429 for the other workers");
        }
    }

    /// The panel's rate now, per second: the ceiling, or lower after 429s; `None` when no
    /// rate is configured.
    pub async fn current_rate(&self) -> Result<Option<f64>, PanelError> {
        let Some(rate) = self.rate else {
            return Ok(None);
        };
        let now = self.limits.current_rate(&self.key, rate).await;
        now.map(Some).map_err(limit_error)
    }

    /// Frees the permit for the next request.
    pub async fn leave(&self, permit: Permit) {
        if let Err(error) = permit.release().await {
            tracing::warn!(%error, panel = %self.key, "could not release a panel permit; it expires");
        }
    }
}

/// The limits' database is the queue's: unreachable is a transport problem, retried.
fn limit_error(error: LimitError) -> PanelError {
    PanelError::Transport(format!("panel limits: {error}"))
}
