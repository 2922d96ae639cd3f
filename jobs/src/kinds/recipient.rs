//! Who a job is for: a user on Telegram or Discord.
//!
//! JSON: `{"platform": "telegram" | "discord", "id": POSITIVE_INT}`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ids::UserId;

/// The chat platform a user is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Telegram,
    Discord,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Telegram, Platform::Discord];

    /// As in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Discord => "discord",
        }
    }

    /// As in prose.
    pub const fn display_name(self) -> &'static str {
        match self {
            Platform::Telegram => "Telegram",
            Platform::Discord => "Discord",
        }
    }

    /// The longest message the platform's API accepts, in its own units ([`Self::length`]).
    pub const fn max_message_chars(self) -> usize {
        match self {
            Platform::Telegram => 4096,
            Platform::Discord => 2000,
        }
    }

    /// A text's length as the platform counts it: Telegram counts UTF-16 code units (an emoji
    /// outside the basic plane is two), Discord counts characters.
    pub fn length(self, text: &str) -> usize {
        match self {
            Platform::Telegram => text.encode_utf16().count(),
            Platform::Discord => text.chars().count(),
        }
    }

    /// The unit [`Self::length`] counts, for messages.
    pub const fn length_unit(self) -> &'static str {
        match self {
            Platform::Telegram => "UTF-16 units",
            Platform::Discord => "characters",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|platform| platform.as_str() == name)
            .ok_or_else(|| format!("platform must be \"telegram\" or \"discord\", got {name:?}"))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlatformVisitor;
        impl Visitor<'_> for PlatformVisitor {
            type Value = Platform;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("platform \"telegram\" or \"discord\"")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Platform, E> {
                Platform::parse(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(PlatformVisitor)
    }
}

/// A user on a platform: where a message goes, whose subscription or transcript it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub platform: Platform,
    pub id: UserId,
}

impl Recipient {
    pub const fn new(platform: Platform, id: UserId) -> Self {
        Self { platform, id }
    }
}

/// `telegram:123456789`.
impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(value: serde_json::Value) -> String {
        match serde_json::from_value::<Recipient>(value) {
            Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn both_platforms_parse_and_round_trip() {
        for (json, platform, id) in [
            (
                json!({"platform": "telegram", "id": 123456789}),
                Platform::Telegram,
                123456789,
            ),
            (
                json!({"platform": "discord", "id": 1234567890123456789_u64}),
                Platform::Discord,
                1234567890123456789,
            ),
        ] {
            let recipient: Recipient = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(recipient.platform, platform);
            assert_eq!(recipient.id.get(), id);
            assert_eq!(serde_json::to_value(recipient).unwrap(), json);
        }
        let recipient = Recipient::new(Platform::Telegram, UserId::parse(7).unwrap());
        assert_eq!(recipient.to_string(), "telegram:7");
    }

    #[test]
    fn bad_recipients_are_rejected_naming_what_is_wrong() {
        let cases = [
            (
                json!({"platform": "slack", "id": 1}),
                "platform must be \"telegram\" or \"discord\", got \"slack\"",
            ),
            (
                json!({"platform": "Telegram", "id": 1}),
                "platform must be \"telegram\" or \"discord\", got \"Telegram\"",
            ),
            (
                json!({"platform": 1, "id": 1}),
                "expected platform \"telegram\" or \"discord\"",
            ),
            (
                json!({"platform": "telegram", "id": 0}),
                "user id must be a positive integer, got 0",
            ),
            (
                json!({"platform": "telegram", "id": -42}),
                "user id must be a positive integer, got -42",
            ),
            (
                json!({"platform": "telegram", "id": "42"}),
                "expected a positive integer user id",
            ),
            (
                json!({"platform": "telegram", "user_id": 42}),
                "unknown field `user_id`",
            ),
            (json!({"platform": "telegram"}), "missing field `id`"),
            (json!({"id": 5}), "missing field `platform`"),
        ];
        for (json, expected) in cases {
            let error = error_of(json.clone());
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
