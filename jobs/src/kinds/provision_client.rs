//! `provision_client`: create (or renew) a user's client on an S-UI panel after an order is paid.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::{SubscriptionId, UserId};
use super::names::{self, Name};
use super::recipient::{Platform, Recipient};
use crate::job::{Job, Rules};

/// JSON: `{"panel": NAME, "plan": NAME, "user": RECIPIENT}` and, to extend an existing
/// subscription instead of creating one, `"renew": SUBSCRIPTION_ID`.
///
/// No default key: the enqueuer gives the order id, since one user may buy the same plan twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionClient {
    #[serde(deserialize_with = "names::panel")]
    pub panel: Name,
    #[serde(deserialize_with = "names::plan")]
    pub plan: Name,
    pub user: Recipient,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew: Option<SubscriptionId>,
}

impl Job for ProvisionClient {
    const RULES: Rules = Rules::new("provision_client", "panel", 10, Duration::from_secs(60))
        .backoff(Duration::from_secs(5), Duration::from_secs(10 * 60));

    fn example() -> Self {
        const USER: UserId = UserId::new_const(123456789);
        Self {
            panel: Name::from_static("de-1"),
            plan: Name::from_static("monthly-50gb"),
            user: Recipient::new(Platform::Telegram, USER),
            renew: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::job::{EnqueueOptions, NewJob};
    use crate::kinds::testing::{assert_example, assert_refused, enqueue};

    fn valid() -> serde_json::Value {
        json!({"panel": "de-1", "plan": "monthly-50gb", "user": {"platform": "telegram", "id": 123456789}})
    }

    #[test]
    fn example_round_trips() {
        assert_example(&ProvisionClient::spec(), valid(), "panel", 10);
    }

    #[test]
    fn documented_shapes_parse() {
        let spec = ProvisionClient::spec();
        let renew = json!({
            "panel": "nl.2", "plan": "yearly_1TB",
            "user": {"platform": "discord", "id": 1234567890123456789_u64},
            "renew": 42,
        });
        assert_eq!(enqueue(&spec, &renew).payload, renew);
        let parsed: ProvisionClient = serde_json::from_value(renew).unwrap();
        assert_eq!(parsed.renew.map(SubscriptionId::get), Some(42));
        assert_eq!(parsed.user.platform, Platform::Discord);

        let mut null_renew = valid();
        null_renew["renew"] = json!(null);
        assert_eq!(enqueue(&spec, &null_renew).payload, valid());
    }

    #[test]
    fn bad_payloads_are_rejected_naming_what_is_wrong() {
        let spec = ProvisionClient::spec();
        let with = |field: &str, value: serde_json::Value| {
            let mut payload = valid();
            payload[field] = value;
            payload
        };
        let cases = [
            (with("plann", json!("x")), "unknown field `plann`"),
            (with("panel", json!("de 1")), "panel \"de 1\" contains ' '"),
            (with("plan", json!("")), "plan must not be empty"),
            (
                with("plan", json!("p".repeat(65))),
                "plan is 65 characters long",
            ),
            (
                with("user", json!({"platform": "whatsapp", "id": 1})),
                "platform must be \"telegram\" or \"discord\"",
            ),
            (
                with("user", json!({"platform": "telegram", "id": 0})),
                "user id must be a positive integer, got 0",
            ),
            (
                with("renew", json!(-1)),
                "subscription id must be a positive integer, got -1",
            ),
            (
                with("renew", json!("42")),
                "expected a positive integer subscription id",
            ),
            (
                json!({"panel": "de-1", "plan": "m"}),
                "missing field `user`",
            ),
        ];
        for error in assert_refused(&spec, cases) {
            assert!(
                error.starts_with("payload of provision_client does not parse"),
                "{error}"
            );
        }
    }

    #[test]
    fn no_default_key_and_an_explicit_key_is_used() {
        let spec = ProvisionClient::spec();
        assert_eq!(enqueue(&spec, &valid()).key, None);
        let options = EnqueueOptions {
            key: Some("order:981".into()),
            ..EnqueueOptions::default()
        };
        let job = NewJob::from_json(&spec, &valid(), options).unwrap();
        assert_eq!(job.key.as_deref(), Some("order:981"));
    }
}
