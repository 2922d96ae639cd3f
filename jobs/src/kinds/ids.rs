//! Positive integer ids: a chat user, a Discord guild or channel, a subscription.
//!
//! Each is its own type so a guild cannot be passed where a channel is meant, and each parses:
//! 0, negatives, floats, strings and numbers past `i64::MAX` are rejected with a message that
//! names the id. Discord snowflakes are u64 on the wire but stay below `i64::MAX` until 2084.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// What the id is, as error messages name it.
            pub const WHAT: &'static str = $what;

            pub fn parse(value: i64) -> Result<Self, String> {
                check_positive(Self::WHAT, value).map(Self)
            }

            /// For constants: a value that is not positive fails to compile when the constant is
            /// evaluated.
            pub(crate) const fn new_const(value: i64) -> Self {
                assert!(value > 0, "ids are positive");
                Self(value)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(value: i64) -> Result<Self, String> {
                Self::parse(value)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_i64(self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_i64(PositiveIdVisitor(Self::WHAT))
                    .map(Self)
            }
        }
    };
}

positive_id!(
    /// A Telegram or Discord user id.
    UserId,
    "user id"
);
positive_id!(
    /// A Discord guild (server) snowflake.
    GuildId,
    "guild id"
);
positive_id!(
    /// A Discord channel snowflake.
    ChannelId,
    "channel id"
);
positive_id!(
    /// A subscription's id in the shop's database.
    SubscriptionId,
    "subscription id"
);

fn check_positive(what: &str, value: i64) -> Result<i64, String> {
    if value > 0 {
        Ok(value)
    } else {
        Err(format!("{what} must be a positive integer, got {value}"))
    }
}

struct PositiveIdVisitor(&'static str);

impl Visitor<'_> for PositiveIdVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a positive integer {}", self.0)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        check_positive(self.0, value).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        let value = i64::try_from(value).map_err(|_| {
            E::custom(format!(
                "{} {value} is too large: at most {}",
                self.0,
                i64::MAX
            ))
        })?;
        self.visit_i64(value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of<T: for<'de> Deserialize<'de> + fmt::Debug>(value: serde_json::Value) -> String {
        match serde_json::from_value::<T>(value) {
            Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn positive_ids_parse_and_round_trip() {
        let id: ChannelId = serde_json::from_value(json!(1234567890123456789_u64)).unwrap();
        assert_eq!(id.get(), 1234567890123456789);
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            json!(1234567890123456789_i64)
        );
        assert_eq!(UserId::parse(1).unwrap().to_string(), "1");
        assert_eq!(i64::from(SubscriptionId::try_from(42).unwrap()), 42);
    }

    #[test]
    fn bad_ids_are_rejected_naming_the_id() {
        let zero = error_of::<GuildId>(json!(0));
        assert!(
            zero.contains("guild id must be a positive integer, got 0"),
            "{zero}"
        );
        let negative = error_of::<UserId>(json!(-5));
        assert!(
            negative.contains("user id must be a positive integer, got -5"),
            "{negative}"
        );
        let string = error_of::<ChannelId>(json!("123"));
        assert!(
            string.contains("expected a positive integer channel id"),
            "{string}"
        );
        let float = error_of::<SubscriptionId>(json!(1.5));
        assert!(
            float.contains("expected a positive integer subscription id"),
            "{float}"
        );
        let huge = error_of::<ChannelId>(json!(u64::MAX));
        assert!(
            huge.contains("channel id 18446744073709551615 is too large"),
            "{huge}"
        );
        assert!(
            SubscriptionId::parse(0)
                .unwrap_err()
                .contains("subscription id")
        );
    }
}
