//! `expire_subscription`: disable a subscription's client on its panel when it runs out.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::ids::SubscriptionId;
use super::timestamp::Timestamp;
use crate::job::{Job, Rules};

/// JSON: `{"subscription": ID, "expiry": RFC3339}` plus an optional `"force": BOOL` (default
/// false, omitted from the stored payload when false).
///
/// Default key `expire_subscription:{id}:{expiry in UTC to the second}`, `:force` appended when
/// forced: a renewal moves the expiry and so gets its own job, and a forced run is not swallowed
/// by an unforced one for the same expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireSubscription {
    pub subscription: SubscriptionId,
    #[serde(deserialize_with = "expiry")]
    pub expiry: Timestamp,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

fn expiry<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    Timestamp::deserialize_as(deserializer, "expiry")
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Job for ExpireSubscription {
    const RULES: Rules = Rules::new("expire_subscription", "panel", 10, Duration::from_secs(60))
        .backoff(Duration::from_secs(10), Duration::from_secs(30 * 60));

    fn default_key(&self) -> Option<String> {
        let force = if self.force { ":force" } else { "" };
        Some(format!(
            "{}:{}:{}{force}",
            Self::KIND,
            self.subscription,
            self.expiry.to_key_string()
        ))
    }

    fn example() -> Self {
        const SUBSCRIPTION: SubscriptionId = SubscriptionId::new_const(42);
        Self {
            subscription: SUBSCRIPTION,
            // 2025-02-01T00:00:00Z
            expiry: Timestamp::from_unix(1738368000),
            force: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::{EnqueueOptions, NewJob};
    use crate::kinds::testing::{assert_example, assert_refused, enqueue};

    #[test]
    fn example_round_trips() {
        let expected = json!({"subscription": 42, "expiry": "2025-02-01T00:00:00Z"});
        assert_example(&ExpireSubscription::spec(), expected, "panel", 10);
    }

    #[test]
    fn documented_shapes_parse_and_force_is_omitted_when_false() {
        let spec = ExpireSubscription::spec();
        let forced = json!({"subscription": 7, "expiry": "2025-02-01T00:00:00Z", "force": true});
        assert_eq!(enqueue(&spec, &forced).payload, forced);
        let not_forced =
            json!({"subscription": 7, "expiry": "2025-02-01T00:00:00Z", "force": false});
        assert_eq!(
            enqueue(&spec, &not_forced).payload,
            json!({"subscription": 7, "expiry": "2025-02-01T00:00:00Z"})
        );
    }

    #[test]
    fn bad_payloads_are_rejected_naming_what_is_wrong() {
        let spec = ExpireSubscription::spec();
        let cases = [
            (
                json!({"subscription": 7, "expires": "2025-02-01T00:00:00Z"}),
                "unknown field `expires`",
            ),
            (
                json!({"subscription": 0, "expiry": "2025-02-01T00:00:00Z"}),
                "subscription id must be a positive integer, got 0",
            ),
            (
                json!({"subscription": -7, "expiry": "2025-02-01T00:00:00Z"}),
                "subscription id must be a positive integer, got -7",
            ),
            (
                json!({"subscription": 7, "expiry": "01.02.2025"}),
                "expiry must be an RFC 3339 timestamp like 2025-02-01T00:00:00Z, got \"01.02.2025\"",
            ),
            (
                json!({"subscription": 7, "expiry": "2025-02-01T00:00:00Z", "force": "yes"}),
                "expected a boolean",
            ),
            (json!({"subscription": 7}), "missing field `expiry`"),
        ];
        assert_refused(&spec, cases);
    }

    #[test]
    fn default_key_is_id_and_expiry_in_utc_seconds_and_an_explicit_key_wins() {
        let spec = ExpireSubscription::spec();
        let payload = json!({"subscription": 7, "expiry": "2025-02-01T03:00:00.123+03:00"});
        assert_eq!(
            enqueue(&spec, &payload).key.as_deref(),
            Some("expire_subscription:7:2025-02-01T00:00:00Z")
        );
        let forced = json!({"subscription": 7, "expiry": "2025-02-01T00:00:00Z", "force": true});
        assert_eq!(
            enqueue(&spec, &forced).key.as_deref(),
            Some("expire_subscription:7:2025-02-01T00:00:00Z:force")
        );
        let options = EnqueueOptions {
            key: Some("admin:expire:7".into()),
            ..EnqueueOptions::default()
        };
        let job = NewJob::from_json(&spec, &payload, options).unwrap();
        assert_eq!(job.key.as_deref(), Some("admin:expire:7"));
    }
}
