//! Masking: what people see of a payload when it carries something that grants access by being
//! known (a subscription link, a client name on a panel, a token).

use serde_json::Value;

/// What replaces a secret, or the secret part of a URL.
pub const MASK: &str = "****";

/// Secrets shorter than this are masked whole; longer ones keep their first two characters so
/// people can tell two of them apart.
const MIN_LEN_TO_SHOW_PREFIX: usize = 8;
const SHOWN_PREFIX: usize = 2;

/// `"Ab****"` for a secret of 8 characters or more, `"****"` for a shorter one: never more than
/// the first two characters, and nothing about the length beyond "at least 8".
pub fn mask(secret: &str) -> String {
    let shown: String = if secret.chars().count() >= MIN_LEN_TO_SHOW_PREFIX {
        secret.chars().take(SHOWN_PREFIX).collect()
    } else {
        String::new()
    };
    format!("{shown}{MASK}")
}

/// Every URL in `text` with its secret parts masked; the rest of the text is left alone.
///
/// - `http://` and `https://`: scheme and host (and port) are kept; any path, query or fragment
///   becomes `/****`, and user info becomes `****@`.
///   `"https://sub.example.com/sub/Ab3xYz?x=1"` → `"https://sub.example.com/****"`.
/// - any other `scheme://` (the proxy client links S-UI hands out, `vless://…`, `vmess://…`,
///   `trojan://…`, `ss://…`, `hysteria2://…`, whose secret sits in the user info or the whole
///   body): everything after `://` becomes `****`.
///
/// A URL ends at whitespace or one of `"<>` and a backtick; punctuation that ends a sentence or
/// closes a bracket right after it (`.,;:!?'")]}*`) is kept as text.
pub fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Bytes of `text` before `copied` are already in `out`.
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find("://") {
        let separator = search_from + found;
        search_from = separator + 3;
        let Some(start) = scheme_start(text, copied, separator) else {
            continue;
        };
        let end = url_end(text, separator + 3);
        out.push_str(&text[copied..start]);
        out.push_str(&mask_url(
            &text[start..separator],
            &text[separator + 3..end],
        ));
        copied = end;
        search_from = search_from.max(end);
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the scheme ending at `separator` begins: letters, digits, `+`, `-`, `.`, starting with a
/// letter, not before `floor`. `None` when there is no scheme.
fn scheme_start(text: &str, floor: usize, separator: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut start = separator;
    while start > floor && is_scheme_byte(bytes[start - 1]) {
        start -= 1;
    }
    (start..separator).find(|&i| bytes[i].is_ascii_alphabetic())
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'
}

/// The end (exclusive, a byte index) of the URL whose body starts at `from`.
fn url_end(text: &str, from: usize) -> usize {
    let end = text[from..]
        .char_indices()
        .find(|&(_, c)| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`'))
        .map_or(text.len(), |(i, _)| from + i);
    let trailing = text[from..end]
        .trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"', ')', ']', '}', '*'])
        .len();
    from + trailing
}

fn mask_url(scheme: &str, rest: &str) -> String {
    let is_web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if !is_web {
        return if rest.is_empty() {
            format!("{scheme}://")
        } else {
            format!("{scheme}://{MASK}")
        };
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{MASK}@{host}"),
        None => authority.to_string(),
    };
    let tail = if tail.is_empty() || tail == "/" {
        tail.to_string()
    } else {
        format!("/{MASK}")
    };
    format!("{scheme}://{host}{tail}")
}

/// `value` with the string values of the named fields masked, at any depth. Under a named field
/// every string is masked, also inside arrays and objects (`"links": ["https://…", …]`); field
/// names match exactly.
pub fn redact_json_fields(value: &Value, secret_fields: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, field)| {
                    let field = if secret_fields.contains(&name.as_str()) {
                        mask_all_strings(field)
                    } else {
                        redact_json_fields(field, secret_fields)
                    };
                    (name.clone(), field)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| redact_json_fields(item, secret_fields))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn mask_all_strings(value: &Value) -> Value {
    match value {
        Value::String(secret) => Value::String(mask(secret)),
        Value::Array(items) => Value::Array(items.iter().map(mask_all_strings).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, field)| (name.clone(), mask_all_strings(field)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mask_never_returns_or_contains_the_secret() {
        let secrets = [
            "",
            "a",
            "ab",
            "abc",
            "abcdefg",
            "abcdefgh",
            "7f3c2a1e-9b4d-4c11-8e0a-2d5f6b7c8d9e",
            "https://sub.example.com/sub/Ab3xYz",
            "пароль-очень-секретный",
        ];
        for secret in secrets {
            let masked = mask(secret);
            assert_ne!(masked, secret);
            if secret.chars().count() > SHOWN_PREFIX {
                assert!(!masked.contains(secret), "{secret} → {masked}");
            }
            assert!(masked.ends_with(MASK));
            assert!(masked.chars().count() <= SHOWN_PREFIX + MASK.len());
        }
    }

    #[test]
    fn mask_shows_a_prefix_only_of_long_secrets_and_hides_the_length() {
        assert_eq!(mask("abc"), "****");
        assert_eq!(mask("abcdefg"), "****");
        assert_eq!(mask("abcdefgh"), "ab****");
        assert_eq!(mask(&"x".repeat(200)), mask(&"x".repeat(9)));
        assert_eq!(mask("пароль-очень"), "па****");
    }

    #[test]
    fn mask_urls_keeps_scheme_and_host() {
        assert_eq!(
            mask_urls("your link: https://sub.example.com/sub/Ab3xYz?x=1 enjoy"),
            "your link: https://sub.example.com/**** enjoy"
        );
        assert_eq!(
            mask_urls("http://10.0.0.1:2096/sub/abc"),
            "http://10.0.0.1:2096/****"
        );
        assert_eq!(
            mask_urls("HTTPS://Sub.Example.com?token=abc"),
            "HTTPS://Sub.Example.com/****"
        );
        assert_eq!(
            mask_urls("https://example.com#frag"),
            "https://example.com/****"
        );
    }

    #[test]
    fn mask_urls_leaves_bare_hosts_and_other_text_alone() {
        let plain = "Thanks for your order! Reply /help if anything goes wrong: 50% off.";
        assert_eq!(mask_urls(plain), plain);
        assert_eq!(mask_urls(""), "");
        assert_eq!(
            mask_urls("see https://example.com and https://example.com/"),
            "see https://example.com and https://example.com/"
        );
        assert_eq!(mask_urls("a :// b"), "a :// b");
        assert_eq!(mask_urls("ends with https://"), "ends with https://");
    }

    #[test]
    fn mask_urls_masks_every_url_and_keeps_surrounding_punctuation() {
        assert_eq!(
            mask_urls("1) https://a.example/x/y. 2) (https://b.example/p?q=1), done"),
            "1) https://a.example/****. 2) (https://b.example/****), done"
        );
        assert_eq!(
            mask_urls("<a href=\"https://a.example/s/k\">link</a>"),
            "<a href=\"https://a.example/****\">link</a>"
        );
        assert_eq!(
            mask_urls("ссылка:\u{a0}https://a.example/s/секрет\u{a0}готово"),
            "ссылка:\u{a0}https://a.example/****\u{a0}готово"
        );
        assert_eq!(
            mask_urls("https://a.example/x\nhttps://b.example/y"),
            "https://a.example/****\nhttps://b.example/****"
        );
    }

    #[test]
    fn mask_urls_masks_user_info_and_proxy_client_links() {
        assert_eq!(
            mask_urls("https://user:pa55@panel.example:2095/app"),
            "https://****@panel.example:2095/****"
        );
        assert_eq!(
            mask_urls("config: vless://7f3c2a1e-9b4d@de1.example:443?security=reality#de-1 ok"),
            "config: vless://**** ok"
        );
        assert_eq!(mask_urls("vmess://eyJhZGQiOiJkZTEifQ=="), "vmess://****");
        let masked = mask_urls("hysteria2://secret@h.example:443/?sni=x");
        assert!(!masked.contains("secret"), "{masked}");
    }

    #[test]
    fn redact_json_fields_masks_named_strings_at_any_depth() {
        let value = json!({
            "client": "tg-123456789-monthly",
            "panel": "de-1",
            "inner": {"token": "abcdefghijkl", "count": 3},
            "items": [{"link": "https://sub.example.com/sub/Ab3xYz"}, {"other": "kept"}],
            "links": ["https://sub.example.com/sub/one", "short"],
            "token": 12345,
        });
        let redacted = redact_json_fields(&value, &["client", "token", "link", "links"]);
        assert_eq!(
            redacted,
            json!({
                "client": "tg****",
                "panel": "de-1",
                "inner": {"token": "ab****", "count": 3},
                "items": [{"link": "ht****"}, {"other": "kept"}],
                "links": ["ht****", "****"],
                "token": 12345,
            })
        );
        assert_eq!(redact_json_fields(&value, &[]), value);
    }
}
