//! The bot token: read from `JOBQ_TELEGRAM_TOKEN`, checked before anything connects, and
//! masked out of every error text (teloxide and reqwest errors carry the request URL, which
//! holds the token).

use secrecy::{ExposeSecret, SecretString};

/// The variable holding the Telegram bot token.
pub use jobs::bot_tokens::TELEGRAM_TOKEN_ENV as TOKEN_ENV;

/// A missing or malformed token: the bot stops before it connects.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{TOKEN_ENV} is not set: give the bot token BotFather issued (BOT_ID:SECRET)")]
    Missing,
    #[error("{TOKEN_ENV} is malformed: {0} (the value is not shown)")]
    Malformed(&'static str),
}

/// A checked bot token. `Debug` never shows it.
#[derive(Clone)]
pub struct BotToken(SecretString);

impl std::fmt::Debug for BotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotToken(****)")
    }
}

impl BotToken {
    /// From `JOBQ_TELEGRAM_TOKEN`.
    pub fn from_env() -> Result<BotToken, TokenError> {
        let value = std::env::var(TOKEN_ENV).unwrap_or_default();
        Self::parse(value.trim())
    }

    /// `DIGITS:SECRET`, as BotFather gives it (the same rule the workers apply).
    pub fn parse(token: &str) -> Result<BotToken, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        jobs::bot_tokens::check_telegram(token).map_err(TokenError::Malformed)?;
        Ok(BotToken(SecretString::from(token.to_owned())))
    }

    /// The token itself: only for building the API client.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `text` with the token, and its secret part, replaced by `****`.
    pub fn mask(&self, text: &str) -> String {
        jobs::bot_tokens::mask(text, self.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    #[test]
    fn a_missing_or_malformed_token_is_refused_naming_the_variable_not_the_value() {
        let missing = BotToken::parse("").unwrap_err().to_string();
        assert!(
            missing.contains("JOBQ_TELEGRAM_TOKEN is not set"),
            "{missing}"
        );
        for bad in [
            "nocolon",
            "abc:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "1:short",
        ] {
            let error = BotToken::parse(bad).unwrap_err().to_string();
            assert!(
                error.contains("JOBQ_TELEGRAM_TOKEN is malformed"),
                "{error}"
            );
            assert!(!error.contains(bad), "{error}");
        }
    }

    #[test]
    fn mask_hides_the_token_and_its_secret_part() {
        let token = BotToken::parse(TOKEN).unwrap();
        let text = format!(
            "error sending request for url (http://x/bot{TOKEN}/GetUpdates) AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
        );
        let masked = token.mask(&text);
        assert!(
            !masked.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            "{masked}"
        );
        assert!(masked.contains("http://x/bot****/GetUpdates"), "{masked}");
        assert_eq!(format!("{token:?}"), "BotToken(****)");
    }
}
