//! The bot tokens, in one place for every process that reads them (workers send DMs, bots
//! connect): the variables that hold them, their shape (a malformed token stops start-up before
//! any call, and the reason never includes the value) and how they are masked in any text.

/// The variable holding the Telegram bot's token.
pub const TELEGRAM_TOKEN_ENV: &str = "JOBQ_TELEGRAM_TOKEN";
/// The variable holding the Discord bot's token.
pub const DISCORD_TOKEN_ENV: &str = "JOBQ_DISCORD_TOKEN";

/// `text` with every occurrence of `token` (and of its secret part after a `:` or the last
/// `.`) replaced by `****`.
pub fn mask(text: &str, token: &str) -> String {
    let mut masked = text.to_owned();
    let parts = [
        Some(token),
        token.split_once(':').map(|(_, secret)| secret),
        token.rsplit_once('.').map(|(_, secret)| secret),
    ];
    // Only parts long enough to be a secret, so masking cannot eat ordinary words.
    for part in parts.into_iter().flatten().filter(|p| p.len() >= 8) {
        masked = masked.replace(part, "****");
    }
    masked
}

/// Telegram's `BOT_ID:SECRET`, as BotFather gives it. `Err` says what is wrong.
pub fn check_telegram(token: &str) -> Result<(), &'static str> {
    let Some((id, secret)) = token.split_once(':') else {
        return Err("expected BOT_ID:SECRET, as BotFather gives it");
    };
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the part before ':' must be the bot's numeric id");
    }
    if secret.len() < 20 || !secret.bytes().all(token_byte) {
        return Err("the part after ':' must be at least 20 characters of A-Z, a-z, 0-9, _ and -");
    }
    Ok(())
}

/// Discord's three dot-separated parts (without the `Bot ` of the header).
pub fn check_discord(token: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let part_ok = |p: &&str| !p.is_empty() && p.bytes().all(token_byte);
    if parts.len() != 3 || !parts.iter().all(part_ok) {
        return Err("expected three dot-separated parts of A-Z, a-z, 0-9, _ and -");
    }
    Ok(())
}

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(check_telegram("123456789:AAbbCCddEEffGGhhIIjj_-00").is_ok());
        assert!(check_telegram("nonsense").is_err());
        assert!(check_telegram("12a:AAbbCCddEEffGGhhIIjj_-00").is_err());
        assert!(check_telegram("123:short").is_err());
        assert!(check_discord("MTIz.abc_DEF.xyz-0").is_ok());
        assert!(check_discord("MTIz.abc").is_err());
        assert!(check_discord("MTIz..xyz").is_err());
        assert!(check_discord("a.b.c d").is_err());
    }
}
