//! Direct messages to chat users: Telegram through teloxide ([`telegram`]), Discord through
//! serenity's REST types ([`discord`]), both behind [`Messenger`], with one error type
//! ([`ChatError`]) classified the way a job needs it: permanent, retry no sooner than a
//! platform's 429 says, or retry after the kind's backoff.
//!
//! Tokens come from `JOBQ_TELEGRAM_TOKEN` / `JOBQ_DISCORD_TOKEN` ([`ChatClients::from_env`]);
//! endpoints from `[telegram] api_url` / `[discord] api_url`. A token never appears in an
//! error: every error text passes through [`mask_token`] before it leaves a client (teloxide
//! and reqwest errors may carry the request URL, which holds the Telegram token).

pub mod discord;
pub mod telegram;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs::configuration::Settings;
use jobs::kinds::{Platform, UserId};
use secrecy::SecretString;

pub use discord::DiscordClient;
pub use telegram::TelegramClient;

/// The variable holding the Discord bot token.
pub use jobs::bot_tokens::DISCORD_TOKEN_ENV;
/// The variable holding the Telegram bot token.
pub use jobs::bot_tokens::TELEGRAM_TOKEN_ENV;

/// Each call's whole budget (connect included): well inside `send_dm`'s 30 s job timeout, so a
/// stalled server becomes a classified, retryable error rather than a job timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a failed send should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatErrorKind {
    /// Will not work however often it is tried (blocked, deactivated, unknown chat, closed DMs,
    /// a bad token).
    Permanent,
    /// The platform said when to come back (a 429): never sooner.
    RetryAfter(Duration),
    /// May work later (network, timeout, 5xx).
    Retryable,
}

/// A send that did not happen (or whose answer was lost), with a reason free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", platform.display_name())]
pub struct ChatError {
    pub platform: Platform,
    pub kind: ChatErrorKind,
    pub reason: String,
}

impl ChatError {
    pub fn permanent(platform: Platform, reason: impl Into<String>) -> Self {
        Self::new(platform, ChatErrorKind::Permanent, reason)
    }

    pub fn retryable(platform: Platform, reason: impl Into<String>) -> Self {
        Self::new(platform, ChatErrorKind::Retryable, reason)
    }

    pub fn retry_after(platform: Platform, after: Duration, reason: impl Into<String>) -> Self {
        Self::new(platform, ChatErrorKind::RetryAfter(after), reason)
    }

    fn new(platform: Platform, kind: ChatErrorKind, reason: impl Into<String>) -> Self {
        ChatError {
            platform,
            kind,
            reason: reason.into(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == ChatErrorKind::Permanent
    }
}

/// A message that reached its chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The platform's id of the message (Telegram's per-chat number, Discord's snowflake).
    pub message_id: String,
}

/// Sends direct messages on one platform.
#[async_trait]
pub trait Messenger: Send + Sync {
    fn platform(&self) -> Platform;

    /// Sends `text` to `user`'s private chat (Telegram: the chat with the user's id; Discord:
    /// the DM channel, opened first).
    async fn send_dm(&self, user: UserId, text: &str) -> Result<Sent, ChatError>;
}

pub use jobs::bot_tokens::mask as mask_token;

/// A token variable is set but cannot be a token: start-up stops on this.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is malformed: {why} (the value is not shown)")]
pub struct TokenError {
    pub variable: &'static str,
    pub why: &'static str,
}

/// The chat clients of a worker process: one per platform whose token is set.
#[derive(Clone, Default)]
pub struct ChatClients {
    pub telegram: Option<Arc<dyn Messenger>>,
    pub discord: Option<Arc<dyn Messenger>>,
}

impl fmt::Debug for ChatClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClients")
            .field("telegram", &self.telegram.is_some())
            .field("discord", &self.discord.is_some())
            .finish()
    }
}

impl ChatClients {
    /// A client for each platform whose token variable is set and not empty, at the
    /// settings' endpoints. A malformed token is an error (start-up should stop); a missing
    /// one leaves that platform out (the worker leaves its DMs to workers that have it).
    pub fn from_env(settings: &Settings) -> Result<ChatClients, TokenError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(SecretString::from)
        };
        let mut clients = ChatClients::default();
        if let Some(token) = var(TELEGRAM_TOKEN_ENV) {
            let client = TelegramClient::new(token, settings.telegram.api_url.as_url())?;
            clients.telegram = Some(Arc::new(client));
        }
        if let Some(token) = var(DISCORD_TOKEN_ENV) {
            let client = DiscordClient::new(token, settings.discord.api_url.as_url())?;
            clients.discord = Some(Arc::new(client));
        }
        Ok(clients)
    }

    /// The variable holding `platform`'s bot token.
    pub fn token_variable(platform: Platform) -> &'static str {
        match platform {
            Platform::Telegram => TELEGRAM_TOKEN_ENV,
            Platform::Discord => DISCORD_TOKEN_ENV,
        }
    }

    /// Whether this process can send DMs on `platform`.
    pub fn has(&self, platform: Platform) -> bool {
        self.client(platform).is_some()
    }

    fn client(&self, platform: Platform) -> &Option<Arc<dyn Messenger>> {
        match platform {
            Platform::Telegram => &self.telegram,
            Platform::Discord => &self.discord,
        }
    }

    /// The client for `platform`, or a permanent error naming the variable to set.
    pub fn get(&self, platform: Platform) -> Result<Arc<dyn Messenger>, ChatError> {
        let variable = Self::token_variable(platform);
        self.client(platform).clone().ok_or_else(|| {
            ChatError::permanent(
                platform,
                format!("no bot token: set {variable} for the workers to send DMs"),
            )
        })
    }
}

/// One reqwest client per chat platform: rustls, the timeouts above, no redirects (an API
/// never redirects a bot, and a redirect could carry the token elsewhere).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // Only fails when the TLS backend cannot initialise: nothing would work then.
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Counts one call in `jobq_external_calls_total{service,outcome}`.
fn record_call(platform: Platform, outcome: Result<(), &ChatError>) {
    let outcome = match outcome {
        Ok(()) => "ok",
        Err(e) => match e.kind {
            ChatErrorKind::Permanent => "refused",
            ChatErrorKind::RetryAfter(_) => "rate_limited",
            ChatErrorKind::Retryable => "error",
        },
    };
    jobs::metrics::record_external_call(platform.as_str(), outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_token_hides_the_token_and_its_secret_part() {
        let token = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        let text = format!(
            "error sending request for url (http://x/bot{token}/SendMessage); part AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
        );
        let masked = mask_token(&text, token);
        assert!(
            !masked.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            "{masked}"
        );
        assert!(masked.contains("/bot****/SendMessage"), "{masked}");
        let discord = "MTA4.Gx1-ab.abcdefghijklmnopqrstuvwx";
        let masked = mask_token(
            &format!("Bot {discord} and abcdefghijklmnopqrstuvwx"),
            discord,
        );
        assert!(!masked.contains("abcdefghijklmnopqrstuvwx"), "{masked}");
    }

    #[test]
    fn a_missing_client_is_a_permanent_error_naming_the_variable() {
        let clients = ChatClients::default();
        let err = clients.get(Platform::Discord).err().expect("no client");
        assert!(err.is_permanent());
        assert!(err.to_string().contains(DISCORD_TOKEN_ENV), "{err}");
    }
}
