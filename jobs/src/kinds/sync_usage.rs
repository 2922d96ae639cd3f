//! `sync_usage`: pull traffic usage from a panel into the shop's database.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::names::{self, Name};
use super::timestamp::Timestamp;
use crate::job::{Job, Rules};

/// JSON: `{"panel": NAME}` for a sync now, or with `"period": RFC3339` for the period starting then.
///
/// Default key `sync_usage:{panel}:{period}` (period in UTC to the second) when a period is
/// given, so a scheduler firing twice syncs it once; none for ad-hoc syncs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncUsage {
    #[serde(deserialize_with = "names::panel")]
    pub panel: Name,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "period"
    )]
    pub period: Option<Timestamp>,
}

fn period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
    struct Period(Timestamp);
    impl<'de> Deserialize<'de> for Period {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            Timestamp::deserialize_as(deserializer, "period").map(Period)
        }
    }
    Ok(Option::<Period>::deserialize(deserializer)?.map(|period| period.0))
}

impl Job for SyncUsage {
    const RULES: Rules = Rules::new("sync_usage", "sync", 3, Duration::from_secs(120))
        .backoff(Duration::from_secs(30), Duration::from_secs(5 * 60));

    fn default_key(&self) -> Option<String> {
        self.period
            .map(|period| format!("{}:{}:{}", Self::KIND, self.panel, period.to_key_string()))
    }

    fn example() -> Self {
        Self {
            panel: Name::from_static("de-1"),
            // 2025-02-01T00:00:00Z
            period: Some(Timestamp::from_unix(1738368000)),
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
        let expected = json!({"panel": "de-1", "period": "2025-02-01T00:00:00Z"});
        assert_example(&SyncUsage::spec(), expected, "sync", 3);
    }

    #[test]
    fn documented_shapes_parse_and_periods_are_stored_in_utc() {
        let spec = SyncUsage::spec();
        let now = json!({"panel": "nl.2"});
        assert_eq!(enqueue(&spec, &now).payload, now);
        let null_period = json!({"panel": "nl.2", "period": null});
        assert_eq!(enqueue(&spec, &null_period).payload, now);
        let offset = json!({"panel": "nl.2", "period": "2025-02-01T03:00:00+03:00"});
        assert_eq!(
            enqueue(&spec, &offset).payload,
            json!({"panel": "nl.2", "period": "2025-02-01T00:00:00Z"})
        );
    }

    #[test]
    fn bad_payloads_are_rejected_naming_what_is_wrong() {
        let spec = SyncUsage::spec();
        let cases = [
            (
                json!({"panel": "de-1", "perod": "2025-02-01T00:00:00Z"}),
                "unknown field `perod`",
            ),
            (
                json!({"panel": "de-1", "period": "2025-02-01"}),
                "period must be an RFC 3339 timestamp",
            ),
            (
                json!({"panel": "de-1", "period": 1738368000}),
                "expected period as an RFC 3339 timestamp string",
            ),
            (
                json!({"panel": "de_1!", "period": "2025-02-01T00:00:00Z"}),
                "panel \"de_1!\" contains '!'",
            ),
            (
                json!({"period": "2025-02-01T00:00:00Z"}),
                "missing field `panel`",
            ),
        ];
        assert_refused(&spec, cases);
    }

    #[test]
    fn default_key_only_with_a_period_and_an_explicit_key_wins() {
        let spec = SyncUsage::spec();
        let with_period = json!({"panel": "de-1", "period": "2025-02-01T03:00:00.5+03:00"});
        assert_eq!(
            enqueue(&spec, &with_period).key.as_deref(),
            Some("sync_usage:de-1:2025-02-01T00:00:00Z")
        );
        assert_eq!(enqueue(&spec, &json!({"panel": "de-1"})).key, None);
        let options = EnqueueOptions {
            key: Some("manual-sync-1".into()),
            ..EnqueueOptions::default()
        };
        let job = NewJob::from_json(&spec, &with_period, options).unwrap();
        assert_eq!(job.key.as_deref(), Some("manual-sync-1"));
    }
}
