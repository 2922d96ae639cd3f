//! The per-user command rate limit both bots apply, so one user cannot flood the queue.
//!
//! Turns are taken from [`jobs::limits::Limits`] (GCRA rows in the queue's database) under
//! `commands:<platform>:<user>`, so the limit holds across every bot process and restart.
//! Admins take turns too, so we know when they go past the limit; they are let through anyway
//! and the bypass is logged at INFO.

use std::time::Duration;

use jobs::Queue;
use jobs::configuration::BotSettings;
use jobs::kinds::Platform;
use jobs::limits::{LimitError, Limits, Rate};

/// What the limit says about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the user's rate.
    Allowed,
    /// Past the rate, but the user is an admin: go on (logged).
    AdminBypass,
    /// Past the rate: refuse, and say when to try again.
    Limited { retry_after: Duration },
}

impl Verdict {
    pub fn allows(self) -> bool {
        !matches!(self, Verdict::Limited { .. })
    }
}

/// The limit of one bot (one platform).
#[derive(Clone)]
pub struct CommandLimit {
    limits: Limits,
    rate: Rate,
    platform: Platform,
}

impl CommandLimit {
    pub fn new(
        queue: &Queue,
        settings: &BotSettings,
        platform: Platform,
    ) -> Result<Self, LimitError> {
        Ok(CommandLimit {
            limits: Limits::new(queue),
            rate: rate(settings),
            platform,
        })
    }

    /// Takes one turn for `user`. A database failure lets the command through (logged): a
    /// flood guard that is down must not stop every command.
    pub async fn check(&self, user: i64, is_admin: bool) -> Verdict {
        let name = format!("commands:{}:{user}", self.platform);
        let wait = match self.limits.try_take(&name, self.rate).await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(%error, platform = %self.platform, user,
                    "command rate limit unavailable; letting the command through");
                return Verdict::Allowed;
            }
        };
        match wait {
            None => Verdict::Allowed,
            Some(_) if is_admin => {
                tracing::info!(platform = %self.platform, user,
                    "admin bypassed the command rate limit");
                Verdict::AdminBypass
            }
            Some(retry_after) => {
                tracing::info!(platform = %self.platform, user, retry_after_ms =
                    u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                    "command refused: user over the command rate limit");
                Verdict::Limited { retry_after }
            }
        }
    }
}

/// The configured rate: `commands_per_minute` on average, `command_burst` at once.
pub fn rate(settings: &BotSettings) -> Rate {
    let per_minute = settings.commands_per_minute.max(1) as f64;
    let burst = u32::try_from(settings.command_burst).unwrap_or(1);
    Rate::per_second(per_minute / 60.0).with_burst(burst)
}

/// The answer to a limited user: what happened and when to try again (whole seconds, up).
pub fn limited_reply(retry_after: Duration) -> String {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    format!(
        "You are sending commands too fast. Try again in {seconds} second{}.",
        if seconds == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_reply_rounds_up_to_whole_seconds() {
        assert_eq!(
            limited_reply(Duration::from_millis(2100)),
            "You are sending commands too fast. Try again in 3 seconds."
        );
        assert_eq!(
            limited_reply(Duration::from_millis(10)),
            "You are sending commands too fast. Try again in 1 second."
        );
    }

    #[test]
    fn rate_follows_the_settings() {
        let settings = BotSettings {
            commands_per_minute: 60,
            command_burst: 3,
        };
        assert_eq!(rate(&settings), Rate::per_second(1.0).with_burst(3));
    }
}
