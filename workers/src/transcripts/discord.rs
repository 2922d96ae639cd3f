//! Reading a ticket channel over Discord's REST API with our own calls (not serenity's, whose
//! ratelimiter sleeps through 429s: the job must see them to persist its retry).
//!
//! `GET /api/v10/channels/{id}` for the name and guild, then
//! `GET /api/v10/channels/{id}/messages?limit=100&after=ID` from `after=0` until a page comes
//! back empty: `after` walks the history oldest first, so pages are rendered as they arrive.
//! The token goes only in the `Authorization` header, never in a URL, log or error.

use std::time::Duration;

use jobs::configuration::BaseUrl;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The environment variable holding the bot token.
pub use jobs::bot_tokens::DISCORD_TOKEN_ENV;
/// Messages per history page: Discord's maximum.
pub const PAGE_LIMIT: usize = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelInfo {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "optional_snowflake")]
    pub guild_id: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Author {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub global_name: Option<String>,
}

impl Author {
    /// The display name, else the username.
    pub fn display_name(&self) -> &str {
        self.global_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.username)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    pub filename: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    pub author: Author,
    #[serde(default)]
    pub content: String,
    pub timestamp: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// How a call to Discord went wrong, classified for the job.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscordError {
    /// 429: no sooner than this.
    RateLimited { after: Duration, reason: String },
    /// Network, timeouts, 5xx, answers that are not Discord's.
    Retryable(String),
    /// 401, 403, 404 and other refusals: trying again will not help.
    Permanent(String),
}

/// The REST client: one connection pool per worker process.
pub struct DiscordHistory {
    http: reqwest::Client,
    api: BaseUrl,
    token: Option<SecretString>,
}

impl DiscordHistory {
    /// `token`: `None` when [`DISCORD_TOKEN_ENV`] is unset; each job then fails saying so.
    pub fn new(api: BaseUrl, token: Option<SecretString>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the Discord HTTP client: {e}"))?;
        Ok(DiscordHistory { http, api, token })
    }

    /// Whether it has a token: without one it can read no channel.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The token from [`DISCORD_TOKEN_ENV`], if set and not blank.
    pub fn token_from_env() -> Option<SecretString> {
        std::env::var(DISCORD_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from)
    }

    pub async fn channel(&self, channel: i64) -> Result<ChannelInfo, DiscordError> {
        self.get(&format!("api/v10/channels/{channel}"), channel)
            .await
    }

    /// Up to [`PAGE_LIMIT`] messages right after message `after` (0: from the first), oldest
    /// first.
    pub async fn page_after(&self, channel: i64, after: u64) -> Result<Vec<Message>, DiscordError> {
        let path = format!("api/v10/channels/{channel}/messages?limit={PAGE_LIMIT}&after={after}");
        let mut page: Vec<Message> = self.get(&path, channel).await?;
        // Discord answers newest first, even with `after`.
        page.sort_by_key(|m| m.id);
        Ok(page)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, channel: i64) -> Result<T, DiscordError> {
        let Some(token) = &self.token else {
            return Err(DiscordError::Permanent(format!(
                "{DISCORD_TOKEN_ENV} is not set: the worker needs the bot token to read channel \
                 {channel}"
            )));
        };
        let url = self
            .api
            .join(path)
            .map_err(|e| DiscordError::Permanent(format!("discord: bad URL for {path}: {e}")))?;
        let response = self
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Bot {}", token.expose_secret()),
            )
            .send()
            .await
            .map_err(|e| {
                DiscordError::Retryable(format!("discord: reading channel {channel}: {e}"))
            })?;
        let status = response.status();
        let retry_after = header_seconds(&response);
        let body = response.bytes().await.map_err(|e| {
            DiscordError::Retryable(format!("discord: reading channel {channel}: {e}"))
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                DiscordError::Retryable(format!(
                    "discord: channel {channel}: the answer is not Discord's ({e})"
                ))
            });
        }
        Err(classify(status, &body, retry_after, channel))
    }
}

/// `Retry-After` in seconds, when the header is a number.
fn header_seconds(response: &reqwest::Response) -> Option<f64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    retry_after: Option<f64>,
}

fn classify(status: StatusCode, body: &[u8], header: Option<f64>, channel: i64) -> DiscordError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let said = match (&parsed.message, parsed.code) {
        (Some(message), Some(code)) => format!(": {message} (code {code})"),
        (Some(message), None) => format!(": {message}"),
        _ => String::new(),
    };
    let reason = format!("discord: channel {channel}: {status}{said}");
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            // The body's value is the precise one (fractions of a second); the header rounds.
            let seconds = parsed.retry_after.or(header).unwrap_or(1.0);
            let after = Duration::from_secs_f64(seconds.clamp(0.0, 3600.0).ceil().max(1.0));
            DiscordError::RateLimited { after, reason }
        }
        StatusCode::UNAUTHORIZED => DiscordError::Permanent(format!(
            "{reason}: the bot token was refused (check {DISCORD_TOKEN_ENV})"
        )),
        s if s.is_server_error() => DiscordError::Retryable(reason),
        _ => DiscordError::Permanent(reason),
    }
}

/// Discord sends snowflakes as strings; numbers are accepted too.
fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

fn optional_snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "snowflake")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_status_and_body() {
        let body = br#"{"message":"You are being rate limited.","retry_after":2.2,"global":false}"#;
        match classify(StatusCode::TOO_MANY_REQUESTS, body, Some(3.0), 5) {
            DiscordError::RateLimited { after, .. } => assert_eq!(after, Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
        match classify(StatusCode::TOO_MANY_REQUESTS, b"", Some(7.0), 5) {
            DiscordError::RateLimited { after, .. } => assert_eq!(after, Duration::from_secs(7)),
            other => panic!("{other:?}"),
        }
        let missing = br#"{"message":"Missing Access","code":50001}"#;
        assert_eq!(
            classify(StatusCode::FORBIDDEN, missing, None, 5),
            DiscordError::Permanent(
                "discord: channel 5: 403 Forbidden: Missing Access (code 50001)".to_string()
            )
        );
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, b"", None, 5),
            DiscordError::Permanent(m) if m.contains("channel 5: 404")
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, b"<html>", None, 5),
            DiscordError::Retryable(_)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, b"", None, 5),
            DiscordError::Permanent(m) if m.contains(DISCORD_TOKEN_ENV)
        ));
    }

    #[test]
    fn messages_parse_with_string_snowflakes() {
        let json = r#"{"id":"1300000000000000042","channel_id":"5","author":{"id":"9","username":"bob","global_name":null,"discriminator":"0","avatar":null},
            "content":"hi","timestamp":"2026-11-22T10:00:00.000000+00:00","attachments":[{"id":"3","filename":"a.png","size":12,"url":"https://cdn/a.png"}],"embeds":[],"type":0}"#;
        let m: Message = serde_json::from_str(json).expect("parses");
        assert_eq!(m.id, 1_300_000_000_000_000_042);
        assert_eq!(m.author.display_name(), "bob");
        assert_eq!(m.attachments[0].size, 12);
        let c: ChannelInfo =
            serde_json::from_str(r#"{"id":"5","name":"ticket-1","guild_id":"77","type":0}"#)
                .expect("parses");
        assert_eq!(c.guild_id, Some(77));
        let dm: ChannelInfo = serde_json::from_str(r#"{"id":"5","type":1}"#).expect("parses");
        assert_eq!(dm.guild_id, None);
    }
}
