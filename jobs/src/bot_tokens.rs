//! The shape of the bot tokens, checked once for every process that reads them (workers send
//! DMs, bots connect): a malformed token stops start-up before any call, and the reason never
//! includes the value.

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
