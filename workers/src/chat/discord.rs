//! Discord DMs over REST with serenity's routes and models, against `[discord] api_url`
//! (Discord, or the fake in `fakes::discord`).
//!
//! serenity's own `Http` hides a 429's `retry_after` (its error keeps only status, code and
//! message) and, with its ratelimiter on, sleeps through 429s without telling the caller and
//! ignores the proxy (`docs/chat-apis.md`). So the DM path builds each request with serenity's
//! [`Request`] (route, `Authorization: Bot …`, proxy base) and executes it on our reqwest
//! client, reading the answer itself: a 429 waits the larger of the body's `retry_after` and
//! the `Retry-After` header ([`DEFAULT_RETRY_AFTER`] only if neither parses). The serenity
//! [`Http`] built on the same client and proxy, ratelimiter off, is there for other calls
//! ([`DiscordClient::http`]).

use std::time::Duration;

use async_trait::async_trait;
use jobs::kinds::{Platform, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route};
use serenity::model::channel::PrivateChannel;
use serenity::model::id::ChannelId;

use super::{ChatError, DISCORD_TOKEN_ENV, Messenger, Sent, TokenError, mask_token, record_call};

/// The wait after a 429 that names none (never seen from Discord; a safe guess).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Sends Discord messages as one bot.
pub struct DiscordClient {
    client: reqwest::Client,
    http: Http,
    /// `Bot TOKEN`: the `Authorization` header.
    authorization: SecretString,
    token: SecretString,
    /// The API's origin (`https://discord.com`, or a fake's), replacing serenity's.
    base: String,
}

impl std::fmt::Debug for DiscordClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("DiscordClient")
            .field("base", &self.base)
            .finish()
    }
}

impl DiscordClient {
    /// A client for the bot `token` (three dot-separated parts; a leading `Bot ` is accepted)
    /// at `api_url`.
    pub fn new(token: SecretString, api_url: &url::Url) -> Result<Self, TokenError> {
        let bare = token.expose_secret().trim();
        let bare = bare.strip_prefix("Bot ").unwrap_or(bare).to_owned();
        check_token(&bare)?;
        let client = super::http_client();
        let base = api_url.as_str().trim_end_matches('/').to_owned();
        let http = HttpBuilder::new(&bare)
            .client(client.clone())
            .proxy(base.clone())
            .ratelimiter_disabled(true)
            .build();
        Ok(DiscordClient {
            client,
            http,
            authorization: SecretString::from(format!("Bot {bare}")),
            token: SecretString::from(bare),
            base,
        })
    }

    /// serenity's REST client on the same connection pool and endpoint, ratelimiter off (its
    /// errors do not carry `retry_after`: see the module doc).
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// Opens (or finds) the DM channel with `user`.
    #[tracing::instrument(skip(self))]
    pub async fn dm_channel(&self, user: UserId) -> Result<ChannelId, ChatError> {
        let body = json!({ "recipient_id": user.get().to_string() });
        let request = Request::new(Route::UserMeDmChannels, LightMethod::Post);
        let channel: PrivateChannel = self.call(request, &body).await?;
        Ok(channel.id)
    }

    /// Posts `text` to `channel`.
    #[tracing::instrument(skip(self, text))]
    /// Posts `text`; the new message's id. A 2xx answer means Discord created the message even
    /// when its body cannot be read: that is a send (reported with an unknown id), never a
    /// reason to post again.
    pub async fn post(&self, channel: ChannelId, text: &str) -> Result<String, ChatError> {
        let body = json!({ "content": text });
        let route = Route::ChannelMessages {
            channel_id: channel,
        };
        let result = self
            .execute_text(Request::new(route, LightMethod::Post), &body)
            .await;
        record_call(Platform::Discord, result.as_ref().map(|_| ()));
        let answer = result?;
        let id = serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|m| m.get("id").and_then(Value::as_str).map(str::to_owned));
        Ok(id.unwrap_or_else(|| {
            tracing::warn!(
                "Discord accepted a message with an unreadable answer; recorded as sent"
            );
            "unknown".to_string()
        }))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        body: &Value,
    ) -> Result<T, ChatError> {
        let result = self.execute(request, body).await;
        record_call(Platform::Discord, result.as_ref().map(|_| ()));
        result
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        body: &Value,
    ) -> Result<T, ChatError> {
        let text = self.execute_text(request, body).await?;
        serde_json::from_str(&text).map_err(|e| {
            ChatError::retryable(
                Platform::Discord,
                format!("unreadable answer from Discord: {e}"),
            )
        })
    }

    /// The body of a 2xx answer, or the refusal classified.
    async fn execute_text(&self, request: Request<'_>, body: &Value) -> Result<String, ChatError> {
        let platform = Platform::Discord;
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ChatError::permanent(platform, format!("request body: {e}")))?;
        let built = request
            .body(Some(bytes))
            .build(
                &self.client,
                self.authorization.expose_secret(),
                Some(&self.base),
            )
            .map_err(|e| ChatError::permanent(platform, self.mask(&e.to_string())))?;
        let response = built
            .send()
            .await
            .map_err(|e| ChatError::retryable(platform, self.mask(&network(&e))))?;
        let status = response.status();
        let retry_header = header_seconds(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| ChatError::retryable(platform, self.mask(&network(&e))))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(self.refusal(status, retry_header, &text))
    }

    /// A non-2xx answer as a [`ChatError`].
    fn refusal(
        &self,
        status: reqwest::StatusCode,
        retry_header: Option<f64>,
        body: &str,
    ) -> ChatError {
        let platform = Platform::Discord;
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let code = json.get("code").and_then(Value::as_i64);
        let message = json
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
        let reason = self.mask(&match code {
            Some(code) => format!("HTTP {} (code {code}): {message}", status.as_u16()),
            None => format!("HTTP {}: {message}", status.as_u16()),
        });
        match status.as_u16() {
            429 => {
                let body_secs = json.get("retry_after").and_then(Value::as_f64);
                ChatError::retry_after(platform, retry_after(body_secs, retry_header), reason)
            }
            401 => ChatError::permanent(
                platform,
                format!("{reason}: check {DISCORD_TOKEN_ENV} and [discord] api_url"),
            ),
            // 50007 "Cannot send messages to this user" (closed DMs), unknown users or
            // channels, invalid bodies: asking again changes nothing.
            400..=499 => ChatError::permanent(platform, reason),
            _ => ChatError::retryable(platform, reason),
        }
    }

    fn mask(&self, text: &str) -> String {
        mask_token(text, self.token.expose_secret())
    }
}

/// A transport error without its URL (reqwest's text holds it; it carries no token on
/// Discord, but the path is noise in a job's error).
fn network(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut text = format!("{kind}: {}", error.without_url_ref());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(&format!(" for url ({url})"), ""),
            None => text,
        }
    }
}

/// `Retry-After` in seconds (Discord sends a number; an HTTP date is not used by it).
fn header_seconds(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// The longer of the two waits a 429 names (never sooner than either says).
fn retry_after(body: Option<f64>, header: Option<f64>) -> Duration {
    let secs = [body, header]
        .into_iter()
        .flatten()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .fold(None, |max: Option<f64>, s| {
            Some(max.map_or(s, |m| m.max(s)))
        });
    match secs {
        // Rounded up to the millisecond, so the wait is never shorter than asked.
        Some(secs) => Duration::from_millis((secs * 1000.0).ceil() as u64),
        None => DEFAULT_RETRY_AFTER,
    }
}

fn check_token(token: &str) -> Result<(), TokenError> {
    jobs::bot_tokens::check_discord(token).map_err(|why| TokenError {
        variable: DISCORD_TOKEN_ENV,
        why,
    })
}

#[async_trait]
impl Messenger for DiscordClient {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    async fn send_dm(&self, user: UserId, text: &str) -> Result<Sent, ChatError> {
        let channel = self.dm_channel(user).await?;
        let message_id = self.post(channel, text).await?;
        Ok(Sent { message_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_the_longer_wait_rounded_up() {
        assert_eq!(retry_after(Some(1.2345), Some(2.0)), Duration::from_secs(2));
        assert_eq!(
            retry_after(Some(1.2341), Some(1.0)),
            Duration::from_millis(1235)
        );
        assert_eq!(retry_after(None, None), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some(f64::NAN), None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn tokens_are_checked_for_shape() {
        assert!(check_token("MTA4.Gx1-ab.abcdefghijklmnop_qrstuvwx").is_ok());
        for bad in ["", "plain", "a.b", "a..c", "a.b.c d", "a.b.c.d"] {
            assert_eq!(check_token(bad).expect_err(bad).variable, DISCORD_TOKEN_ENV);
        }
    }
}
