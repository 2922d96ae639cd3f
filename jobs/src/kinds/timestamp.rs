//! Points in time in payloads: strict RFC 3339 in, UTC RFC 3339 out.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::labelled::{self, FromLabelledStr};

/// An instant, written in JSON as an RFC 3339 timestamp with an offset
/// (`2025-02-01T00:00:00Z`, `2025-02-01T03:00:00+03:00`) and stored normalised to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_as("timestamp", text)
    }

    /// As [`Timestamp::parse`], with errors naming the field (`"expiry"`, `"period"`).
    pub fn parse_as(what: &str, text: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|time| Self(time.with_timezone(&Utc)))
            .map_err(|e| {
                format!(
                    "{what} must be an RFC 3339 timestamp like 2025-02-01T00:00:00Z, got {text:?} ({e})"
                )
            })
    }

    /// Seconds since the Unix epoch, for examples; out of chrono's range gives the epoch.
    pub(crate) fn from_unix(seconds: i64) -> Self {
        Self(DateTime::from_timestamp(seconds, 0).unwrap_or_default())
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// RFC 3339 in UTC to the second (`2025-02-01T00:00:00Z`): the form idempotency keys use.
    pub fn to_key_string(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// A deserializer whose errors name the field.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        deserializer: D,
        what: &'static str,
    ) -> Result<Self, D::Error> {
        labelled::deserialize(deserializer, what)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self(time)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(time: Timestamp) -> Self {
        time.0
    }
}

/// RFC 3339 in UTC, with fractional seconds only when there are any.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize_as(deserializer, "timestamp")
    }
}

impl FromLabelledStr for Timestamp {
    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string")
    }

    fn parse_labelled(label: &str, text: &str) -> Result<Self, String> {
        Timestamp::parse_as(label, text)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc3339_parses_and_normalises_to_utc() {
        let time: Timestamp = serde_json::from_value(json!("2025-02-01T03:00:00+03:00")).unwrap();
        assert_eq!(time.to_key_string(), "2025-02-01T00:00:00Z");
        assert_eq!(
            serde_json::to_value(time).unwrap(),
            json!("2025-02-01T00:00:00Z")
        );
        let precise = Timestamp::parse("2025-02-01T00:00:00.250Z").unwrap();
        assert_eq!(precise.to_string(), "2025-02-01T00:00:00.250Z");
        assert_eq!(precise.to_key_string(), "2025-02-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(1738368000).to_string(),
            "2025-02-01T00:00:00Z"
        );
    }

    #[test]
    fn bad_timestamps_are_rejected_naming_the_field() {
        for bad in [
            json!("2025-02-01"),
            json!("2025-02-01T00:00Z"),
            json!("2025-02-01T00:00:00"),
            json!("2025-13-01T00:00:00Z"),
            json!("tomorrow"),
        ] {
            let error = serde_json::from_value::<Timestamp>(bad.clone())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("timestamp must be an RFC 3339 timestamp"),
                "{bad}: {error}"
            );
        }
        let error = serde_json::from_value::<Timestamp>(json!(1738368000))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("expected timestamp as an RFC 3339"),
            "{error}"
        );
        assert!(
            Timestamp::parse_as("expiry", "x")
                .unwrap_err()
                .starts_with("expiry must")
        );
    }
}
