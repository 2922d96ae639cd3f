//! `upload_transcript`: archive a closed Discord ticket channel and send the transcript to its owner.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::{ChannelId, GuildId, UserId};
use super::recipient::{Platform, Recipient};
use crate::job::{Job, Rules};

/// JSON: `{"guild": SNOWFLAKE, "channel": SNOWFLAKE, "owner": RECIPIENT}`.
///
/// Default key `upload_transcript:{guild}:{channel}`: a ticket channel closes once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadTranscript {
    pub guild: GuildId,
    pub channel: ChannelId,
    pub owner: Recipient,
}

impl Job for UploadTranscript {
    const RULES: Rules = Rules::new(
        "upload_transcript",
        "transcripts",
        8,
        Duration::from_secs(300),
    )
    .backoff(Duration::from_secs(10), Duration::from_secs(30 * 60));

    fn default_key(&self) -> Option<String> {
        Some(format!("{}:{}:{}", Self::KIND, self.guild, self.channel))
    }

    fn example() -> Self {
        const GUILD: GuildId = GuildId::new_const(1100000000000000001);
        const CHANNEL: ChannelId = ChannelId::new_const(1300000000000000042);
        const OWNER: UserId = UserId::new_const(1200000000000000007);
        Self {
            guild: GUILD,
            channel: CHANNEL,
            owner: Recipient::new(Platform::Discord, OWNER),
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
        json!({
            "guild": 1100000000000000001_i64,
            "channel": 1300000000000000042_i64,
            "owner": {"platform": "discord", "id": 1200000000000000007_i64},
        })
    }

    #[test]
    fn example_round_trips() {
        assert_example(&UploadTranscript::spec(), valid(), "transcripts", 8);
    }

    #[test]
    fn documented_shape_parses_with_a_telegram_owner_too() {
        let spec = UploadTranscript::spec();
        let payload = json!({"guild": 1, "channel": 2, "owner": {"platform": "telegram", "id": 3}});
        assert_eq!(enqueue(&spec, &payload).payload, payload);
    }

    #[test]
    fn bad_payloads_are_rejected_naming_what_is_wrong() {
        let spec = UploadTranscript::spec();
        let with = |field: &str, value: serde_json::Value| {
            let mut payload = valid();
            payload[field] = value;
            payload
        };
        let cases = [
            (with("ticket", json!(1)), "unknown field `ticket`"),
            (
                with("guild", json!(0)),
                "guild id must be a positive integer, got 0",
            ),
            (
                with("channel", json!(-3)),
                "channel id must be a positive integer, got -3",
            ),
            (
                with("channel", json!("1300000000000000042")),
                "expected a positive integer channel id",
            ),
            (
                with("owner", json!({"platform": "discord", "id": 0})),
                "user id must be a positive integer, got 0",
            ),
            (
                with("owner", json!({"platform": "matrix", "id": 1})),
                "platform must be \"telegram\" or \"discord\"",
            ),
        ];
        assert_refused(&spec, cases);
    }

    #[test]
    fn default_key_is_guild_and_channel_and_an_explicit_key_wins() {
        let spec = UploadTranscript::spec();
        assert_eq!(
            enqueue(&spec, &valid()).key.as_deref(),
            Some("upload_transcript:1100000000000000001:1300000000000000042")
        );
        let options = EnqueueOptions {
            key: Some("ticket:77".into()),
            ..EnqueueOptions::default()
        };
        let job = NewJob::from_json(&spec, &valid(), options).unwrap();
        assert_eq!(job.key.as_deref(), Some("ticket:77"));
    }
}
