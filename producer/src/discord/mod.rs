//! The Discord bot (`jobq discord`): slash commands in, typed jobs out.
//!
//! - [`commands`]: the logic, free of serenity: an [`commands::Invocation`] in, jobs enqueued
//!   (keyed by the interaction id), a [`commands::Reply`] out; admin checks by role id, the
//!   per-user command limit.
//! - [`gateway`]: serenity's glue: command registration per guild, interactions read, replies
//!   sent, the gateway client.
//!
//! The bot never calls a slow service inline: a ticket's transcript and a DM are jobs for the
//! workers; the only REST calls here are the answer to the interaction and, for
//! `/ticket close` without an owner, the channel's topic.

pub mod commands;
pub mod gateway;

/// The serenity this bot is built with, for the binary and the tests (one version, no second
/// dependency to keep in step).
pub use serenity;

use std::future::Future;

use jobs::Queue;
use jobs::configuration::Settings;
use jobs::kinds::Platform;
use secrecy::{ExposeSecret, SecretString};

use crate::command_limit::CommandLimit;
use commands::{Admins, Bot};

/// Where the bot token comes from (never a file, never logged).
pub use jobs::bot_tokens::DISCORD_TOKEN_ENV as TOKEN_ENV;

/// The token variable is missing or cannot be a bot token: the bot stops before connecting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("{TOKEN_ENV} is not set: the Discord bot needs its bot token there")]
    Missing,
    #[error(
        "{TOKEN_ENV} is malformed: expected three dot-separated parts of A-Z, a-z, 0-9, _ and - \
         (the value is not shown)"
    )]
    Malformed,
}

/// The token from [`TOKEN_ENV`], checked.
pub fn token_from_env() -> Result<SecretString, TokenError> {
    token_from(std::env::var(TOKEN_ENV).ok())
}

/// Checks a token's shape (a leading `Bot ` is accepted and dropped).
pub fn token_from(value: Option<String>) -> Result<SecretString, TokenError> {
    let value = value
        .filter(|v| !v.trim().is_empty())
        .ok_or(TokenError::Missing)?;
    let bare = value.trim();
    let bare = bare.strip_prefix("Bot ").unwrap_or(bare);
    jobs::bot_tokens::check_discord(bare).map_err(|_| TokenError::Malformed)?;
    Ok(SecretString::from(bare.to_owned()))
}

/// Why the bot stopped (the token masked out of any message).
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("cannot set up the command rate limit: {0}")]
    Limit(#[from] jobs::limits::LimitError),
    #[error("cannot read subscriptions: {0}")]
    Subscriptions(#[from] jobs::subscriptions::SubscriptionError),
    #[error("the Discord gateway failed: {0}")]
    Gateway(String),
}

/// The command layer for these settings.
pub fn bot(settings: &Settings, queue: &Queue) -> Result<Bot, BotError> {
    let limit = CommandLimit::new(queue, &settings.bots, Platform::Discord)?;
    Ok(Bot::new(
        queue.clone(),
        limit,
        Admins::from_settings(&settings.discord),
    )?)
}

/// Runs the bot until `shutdown` completes: registers the commands in `[discord] guilds` on
/// connecting, then answers interactions.
pub async fn run(
    settings: &Settings,
    queue: &Queue,
    token: SecretString,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BotError> {
    let bot = bot(settings, queue)?;
    let guilds: Vec<u64> = settings
        .discord
        .guilds
        .iter()
        .filter_map(|g| u64::try_from(*g).ok())
        .collect();
    if guilds.is_empty() {
        tracing::warn!("no [discord] guilds configured: the slash commands are registered nowhere");
    }
    if settings.discord.admin_roles.is_empty() && settings.discord.admins.is_empty() {
        tracing::warn!("no [discord] admin_roles or admins: /notify and /jobs refuse everyone");
    }
    let http = gateway::http_client(&token, settings.discord.api_url.as_url());
    tracing::info!(api = %settings.discord.api_url.as_str(), "starting the Discord bot");
    gateway::run(http, bot, guilds, shutdown)
        .await
        .map_err(|error| BotError::Gateway(mask(&error.to_string(), &token)))
}

fn mask(text: &str, token: &SecretString) -> String {
    jobs::bot_tokens::mask(text, token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_is_checked_and_never_shown() {
        assert_eq!(token_from(None).err(), Some(TokenError::Missing));
        assert_eq!(
            token_from(Some("  ".into())).err(),
            Some(TokenError::Missing)
        );
        let bad = token_from(Some("not-a-token-secretvalue".into())).err();
        assert_eq!(bad, Some(TokenError::Malformed));
        let message = TokenError::Malformed.to_string();
        assert!(message.contains(TOKEN_ENV) && !message.contains("secretvalue"));
        let ok = token_from(Some("Bot MTA4.Gx1-ab.abcdefghijklmnop".into())).ok();
        assert_eq!(
            ok.map(|t| t.expose_secret().to_owned()).as_deref(),
            Some("MTA4.Gx1-ab.abcdefghijklmnop")
        );
    }
}
