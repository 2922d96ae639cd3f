//! `send_dm`: a direct message to a user on Telegram or Discord.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::UserId;
use super::recipient::{Platform, Recipient};
use crate::job::{Job, Rules};
use crate::redact;

/// JSON: `{"user": RECIPIENT, "text": STRING}`. The text is not blank and fits the platform's
/// limit (4096 characters on Telegram, 2000 on Discord); it is stored as given.
///
/// The fields are private: a `SendDm` that exists fits its platform. No default key: the same
/// text may rightly be sent twice; the enqueuer keys by what caused it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SendDmFields")]
pub struct SendDm {
    user: Recipient,
    text: String,
}

/// The JSON shape before the text is checked against the platform.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendDmFields {
    user: Recipient,
    text: String,
}

impl TryFrom<SendDmFields> for SendDm {
    type Error = String;
    fn try_from(fields: SendDmFields) -> Result<Self, String> {
        Self::new(fields.user, fields.text)
    }
}

impl SendDm {
    pub fn new(user: Recipient, text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if !text.chars().any(visible) {
            return Err("text must not be empty (or only spaces and invisible characters)".into());
        }
        let platform = user.platform;
        let limit = platform.max_message_chars();
        let len = platform.length(&text);
        if len > limit {
            let counted = if len == text.chars().count() {
                String::new()
            } else {
                format!(
                    " ({} counts {}: most emoji count twice)",
                    platform.display_name(),
                    platform.length_unit()
                )
            };
            return Err(format!(
                "text is {len} characters long, over the {} limit of {limit}{counted}",
                platform.display_name(),
            ));
        }
        Ok(Self { user, text })
    }

    pub fn user(&self) -> Recipient {
        self.user
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A character a reader sees: not white space, and not one of the invisible format characters
/// (zero-width spaces and joiners, direction marks, variation selectors, fillers, tags) that the
/// chat APIs strip before refusing the text as empty.
fn visible(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// With links masked, so logging a job does not hand out subscriptions.
impl fmt::Debug for SendDm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendDm")
            .field("user", &self.user)
            .field("text", &redact::mask_urls(&self.text))
            .finish()
    }
}

impl Job for SendDm {
    const RULES: Rules = Rules::new("send_dm", "messages", 8, Duration::from_secs(30))
        .backoff(Duration::from_secs(5), Duration::from_secs(15 * 60));

    fn example() -> Self {
        const USER: UserId = UserId::new_const(123456789);
        Self {
            user: Recipient::new(Platform::Telegram, USER),
            text: "Your subscription is ready: https://sub.example.com/sub/Ab3xYz".to_string(),
        }
    }

    /// The text may carry a subscription link, which grants access by being known: URLs in it
    /// keep only scheme and host.
    fn redact(payload: &Value) -> Value {
        let mut payload = payload.clone();
        if let Some(Value::String(text)) = payload.get_mut("text") {
            *text = redact::mask_urls(text);
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::{EnqueueOptions, NewJob};
    use crate::kinds::testing::{assert_example, assert_refused, enqueue};

    fn to(platform: &str, text: &str) -> Value {
        json!({"user": {"platform": platform, "id": 123456789}, "text": text})
    }

    #[test]
    fn example_round_trips() {
        let expected = to(
            "telegram",
            "Your subscription is ready: https://sub.example.com/sub/Ab3xYz",
        );
        assert_example(&SendDm::spec(), expected, "messages", 8);
    }

    #[test]
    fn documented_shapes_parse_up_to_each_platform_limit() {
        let spec = SendDm::spec();
        for payload in [
            to("telegram", "Hi!"),
            to("discord", "  spaced  "),
            to("telegram", &"я".repeat(4096)),
            to("discord", &"x".repeat(2000)),
            to("telegram", &"😀".repeat(2048)),
            to("discord", &"😀".repeat(2000)),
            // The six characters of an escape, not a NUL: harmless.
            to("telegram", "a literal \\u0000 in a text"),
            to("telegram", "\u{200B}visible"),
        ] {
            assert_eq!(enqueue(&spec, &payload).payload, payload);
        }
    }

    #[test]
    fn bad_payloads_are_rejected_naming_what_is_wrong() {
        let spec = SendDm::spec();
        let cases = [
            (to("telegram", ""), "text must not be empty".to_string()),
            (
                to("discord", " \n\t "),
                "text must not be empty".to_string(),
            ),
            (
                to(
                    "telegram",
                    "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF} \u{FE0F}",
                ),
                "text must not be empty".to_string(),
            ),
            (
                to("telegram", "a real \u{0} inside"),
                "contains a NUL character".to_string(),
            ),
            (
                to("telegram", &"😀".repeat(2049)),
                "text is 4098 characters long, over the Telegram limit of 4096 (Telegram counts \
                 UTF-16 units: most emoji count twice)"
                    .to_string(),
            ),
            (
                to("telegram", &"я".repeat(4097)),
                "text is 4097 characters long, over the Telegram limit of 4096".to_string(),
            ),
            (
                to("discord", &"x".repeat(2001)),
                "text is 2001 characters long, over the Discord limit of 2000".to_string(),
            ),
            (
                json!({"user": {"platform": "telegram", "id": 1}, "text": "hi", "silent": true}),
                "unknown field `silent`".to_string(),
            ),
            (
                json!({"user": {"platform": "icq", "id": 1}, "text": "hi"}),
                "platform must be \"telegram\" or \"discord\", got \"icq\"".to_string(),
            ),
            (
                json!({"user": {"platform": "telegram", "id": -1}, "text": "hi"}),
                "user id must be a positive integer, got -1".to_string(),
            ),
            (
                json!({"user": {"platform": "telegram", "id": 1}, "text": 5}),
                "invalid type: integer `5`, expected a string".to_string(),
            ),
            (
                json!({"user": {"platform": "telegram", "id": 1}}),
                "missing field `text`".to_string(),
            ),
        ];
        assert_refused(&spec, cases);
        let user = Recipient::new(Platform::Discord, UserId::parse(1).unwrap());
        assert!(SendDm::new(user, "x".repeat(2001)).is_err());
        assert_eq!(SendDm::new(user, "ok").unwrap().text(), "ok");
    }

    #[test]
    fn no_default_key_and_an_explicit_key_is_used() {
        let spec = SendDm::spec();
        assert_eq!(enqueue(&spec, &to("telegram", "hi")).key, None);
        let options = EnqueueOptions {
            key: Some("tg-update:5501".into()),
            ..EnqueueOptions::default()
        };
        let job = NewJob::from_json(&spec, &to("telegram", "hi"), options).unwrap();
        assert_eq!(job.key.as_deref(), Some("tg-update:5501"));
    }

    #[test]
    fn redact_masks_links_in_the_text_and_leaves_the_rest_alone() {
        let spec = SendDm::spec();
        let payload = to(
            "telegram",
            "your link: https://sub.example.com/sub/Ab3xYz?x=1 enjoy",
        );
        assert_eq!(
            (spec.redact)(&payload),
            to("telegram", "your link: https://sub.example.com/**** enjoy")
        );
        let plain = to("discord", "Your ticket was closed. Thanks!");
        assert_eq!((spec.redact)(&plain), plain);
        let redacted_example = (spec.redact)(&(spec.example)());
        assert!(!redacted_example.to_string().contains("Ab3xYz"));
    }

    #[test]
    fn debug_does_not_show_links() {
        let debug = format!("{:?}", SendDm::example());
        assert!(debug.contains("https://sub.example.com/****"), "{debug}");
        assert!(!debug.contains("Ab3xYz"), "{debug}");
    }
}
