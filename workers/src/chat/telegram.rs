//! Telegram DMs through teloxide, against `[telegram] api_url` (Telegram, a self-hosted Bot API
//! server, or the fake in `fakes::telegram`).
//!
//! teloxide reads errors from the JSON body, not the status (see `docs/chat-apis.md`); they are
//! classified here: blocked, deactivated, chat not found, can't initiate, bots, kicked, a bad
//! token and other `Bad Request`/`Forbidden` answers are permanent; `retry_after` waits at least
//! that long; network and I/O errors, timeouts and 5xx are retryable.

use async_trait::async_trait;
use jobs::kinds::{Platform, UserId};
use secrecy::{ExposeSecret, SecretString};
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::ChatId;
use teloxide::{ApiError, Bot};

use super::{ChatError, Messenger, Sent, TELEGRAM_TOKEN_ENV, TokenError, mask_token, record_call};

/// Sends Telegram messages as one bot.
pub struct TelegramClient {
    bot: Bot,
    token: SecretString,
}

impl std::fmt::Debug for TelegramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("TelegramClient")
            .field("api_url", &self.bot.api_url().as_str())
            .finish()
    }
}

impl TelegramClient {
    /// A client for the bot `token` (`DIGITS:SECRET`, as BotFather gives it) at `api_url`.
    pub fn new(token: SecretString, api_url: &url::Url) -> Result<Self, TokenError> {
        check_token(token.expose_secret())?;
        let bot = Bot::with_client(token.expose_secret(), super::http_client())
            .set_api_url(api_base(api_url));
        Ok(TelegramClient { bot, token })
    }

    /// The teloxide bot, for callers that need other methods (same client, same timeouts).
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// `error` as a [`ChatError`], its text free of the token.
    pub fn classify(&self, error: &RequestError) -> ChatError {
        // An API refusal reads best as Telegram's own description ("Forbidden: bot was
        // blocked by the user"), without teloxide's "A Telegram's error:" prefix.
        let text = match error {
            RequestError::Api(api) => api.to_string(),
            other => other.to_string(),
        };
        let reason = mask_token(&text, self.token.expose_secret());
        classify(error, reason)
    }
}

/// teloxide appends `bot<TOKEN>/<Method>` as path segments: a base ending in `/` would give
/// `//bot…`, so the empty last segment goes.
fn api_base(api_url: &url::Url) -> url::Url {
    let mut base = api_url.clone();
    if let Ok(mut segments) = base.path_segments_mut() {
        segments.pop_if_empty();
    }
    base
}

fn check_token(token: &str) -> Result<(), TokenError> {
    let malformed = |why| TokenError {
        variable: TELEGRAM_TOKEN_ENV,
        why,
    };
    jobs::bot_tokens::check_telegram(token).map_err(malformed)
}

fn classify(error: &RequestError, reason: String) -> ChatError {
    let platform = Platform::Telegram;
    match error {
        RequestError::RetryAfter(seconds) => {
            ChatError::retry_after(platform, seconds.duration(), reason)
        }
        RequestError::Network(_) | RequestError::Io(_) => ChatError::retryable(platform, reason),
        RequestError::Api(api) if api_error_is_transient(api) => {
            ChatError::retryable(platform, reason)
        }
        RequestError::Api(ApiError::InvalidToken) => ChatError::permanent(
            platform,
            format!("{reason}: check {TELEGRAM_TOKEN_ENV} and [telegram] api_url"),
        ),
        // Blocked, deactivated, chat not found, can't initiate, kicked, bad requests; a DM's
        // chat never migrates; a body that is not the Bot API's JSON (permanent, as
        // `docs/chat-apis.md` says).
        RequestError::Api(_)
        | RequestError::MigrateToChatId(_)
        | RequestError::InvalidJson { .. } => ChatError::permanent(platform, reason),
    }
}

/// An answer teloxide did not recognise that is not a refusal: a server error's description
/// (`Internal Server Error`, `Bad Gateway`) rather than `Bad Request: …`/`Forbidden: …`.
fn api_error_is_transient(error: &ApiError) -> bool {
    let ApiError::Unknown(text) = error else {
        return false;
    };
    let refusal = [
        "Bad Request",
        "Forbidden",
        "Unauthorized",
        "Not Found",
        "Conflict",
    ];
    !refusal.iter().any(|prefix| text.starts_with(prefix))
}

#[async_trait]
impl Messenger for TelegramClient {
    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    #[tracing::instrument(skip(self, text), fields(platform = "telegram"))]
    async fn send_dm(&self, user: UserId, text: &str) -> Result<Sent, ChatError> {
        let result = self.bot.send_message(ChatId(user.get()), text).await;
        let result = match result {
            Ok(message) => Ok(Sent {
                message_id: message.id.0.to_string(),
            }),
            Err(error) => Err(self.classify(&error)),
        };
        record_call(Platform::Telegram, result.as_ref().map(|_| ()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_shape() {
        for good in [
            "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "1:abcdefghij_klmnopqrs-",
        ] {
            assert!(check_token(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "abc",
            "123456",
            "x:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "1:short",
            "1:has space in the secret part!",
        ] {
            let err = check_token(bad).expect_err(bad);
            assert_eq!(err.variable, TELEGRAM_TOKEN_ENV);
        }
    }

    #[test]
    fn unknown_api_errors_are_permanent_unless_a_server_error() {
        assert!(!api_error_is_transient(&ApiError::BotBlocked));
        assert!(!api_error_is_transient(&ApiError::Unknown(
            "Forbidden: bot can't initiate conversation with a user".into()
        )));
        assert!(api_error_is_transient(&ApiError::Unknown(
            "Internal Server Error".into()
        )));
    }

    #[test]
    fn the_base_loses_its_trailing_slash_only() {
        let base = |s: &str| api_base(&url::Url::parse(s).expect("url")).to_string();
        assert_eq!(base("http://127.0.0.1:81/"), "http://127.0.0.1:81/");
        assert_eq!(base("http://127.0.0.1:81/tg/"), "http://127.0.0.1:81/tg");
    }
}
