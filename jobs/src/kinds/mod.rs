//! The product kinds: each a payload type that parses (not merely validates) at enqueue, so a job
//! in the queue is one a worker can run.
//!
//! | kind                  | queue         | attempts | timeout | retry          |
//! |-----------------------|---------------|----------|---------|----------------|
//! | `expire_subscription` | `panel`       | 10       | 60 s    | 10 s … 30 min  |
//! | `provision_client`    | `panel`       | 10       | 60 s    | 5 s … 10 min   |
//! | `send_dm`             | `messages`    | 8        | 30 s    | 5 s … 15 min   |
//! | `sync_usage`          | `sync`        | 3        | 120 s   | 30 s … 5 min   |
//! | `upload_transcript`   | `transcripts` | 8        | 300 s   | 10 s … 30 min  |
//!
//! Shared payload parts: [`Recipient`] (a user on a [`Platform`]), [`Name`] (panels and plans),
//! the positive ids ([`UserId`], [`GuildId`], [`ChannelId`], [`SubscriptionId`]) and
//! [`Timestamp`] (strict RFC 3339).

mod expire_subscription;
mod ids;
mod labelled;
mod names;
mod provision_client;
mod recipient;
mod send_dm;
mod sync_usage;
mod timestamp;
mod upload_transcript;

pub use expire_subscription::ExpireSubscription;
pub use ids::{ChannelId, GuildId, SubscriptionId, UserId};
pub use names::Name;
pub use provision_client::ProvisionClient;
pub use recipient::{Platform, Recipient};
pub use send_dm::SendDm;
pub use sync_usage::SyncUsage;
pub use timestamp::Timestamp;
pub use upload_transcript::UploadTranscript;

use crate::job::{Job, JobSpec};

/// Every kind, ordered by name.
pub fn specs() -> Vec<JobSpec> {
    vec![
        ExpireSubscription::spec(),
        ProvisionClient::spec(),
        SendDm::spec(),
        SyncUsage::spec(),
        UploadTranscript::spec(),
    ]
}

/// The kind named `kind`, if there is one.
pub fn spec(kind: &str) -> Option<JobSpec> {
    specs().into_iter().find(|spec| spec.kind == kind)
}

/// `"expire_subscription, provision_client, …"`, for error messages.
pub fn known_kinds() -> String {
    specs()
        .iter()
        .map(|spec| spec.kind)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod testing {
    use serde_json::Value;

    use crate::job::{EnqueueOptions, JobSpec, NewJob};

    /// The job `payload` makes with default options; panics with the reason if it does not parse.
    pub(crate) fn enqueue(spec: &JobSpec, payload: &Value) -> NewJob {
        match NewJob::from_json(spec, payload, EnqueueOptions::default()) {
            Ok(job) => job,
            Err(e) => panic!("{payload} should parse as {}: {e}", spec.kind),
        }
    }

    /// Why `payload` does not parse; panics if it does.
    pub(crate) fn parse_error(spec: &JobSpec, payload: &Value) -> String {
        match NewJob::from_json(spec, payload, EnqueueOptions::default()) {
            Ok(job) => panic!("{payload} should not parse as {}, got {job:?}", spec.kind),
            Err(e) => e.to_string(),
        }
    }

    /// The kind's example is `expected` and enqueues unchanged on `queue` with `max_attempts`.
    pub(crate) fn assert_example(spec: &JobSpec, expected: Value, queue: &str, max_attempts: u32) {
        let example = (spec.example)();
        assert_eq!(example, expected);
        let job = enqueue(spec, &example);
        assert_eq!(job.payload, example);
        assert_eq!(job.kind, spec.kind);
        assert_eq!(job.queue, queue);
        assert_eq!(job.max_attempts, max_attempts);
    }

    /// Each payload is refused with an error that contains its text; returns the errors.
    pub(crate) fn assert_refused<T: AsRef<str>>(
        spec: &JobSpec,
        cases: impl IntoIterator<Item = (Value, T)>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for (payload, expected) in cases {
            let error = parse_error(spec, &payload);
            assert!(error.contains(expected.as_ref()), "{payload}: {error}");
            errors.push(error);
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::testing::enqueue;
    use super::*;
    use crate::job::{InvalidJob, is_valid_queue_name};

    #[test]
    fn specs_are_sorted_unique_and_complete() {
        let kinds: Vec<&str> = specs().iter().map(|spec| spec.kind).collect();
        assert_eq!(
            kinds,
            [
                "expire_subscription",
                "provision_client",
                "send_dm",
                "sync_usage",
                "upload_transcript"
            ]
        );
        assert_eq!(
            known_kinds(),
            "expire_subscription, provision_client, send_dm, sync_usage, upload_transcript"
        );
    }

    #[test]
    fn every_example_enqueues_on_a_valid_queue_and_redacts_without_changing_shape() {
        for spec in specs() {
            assert!(is_valid_queue_name(spec.queue), "{}", spec.kind);
            assert!(spec.retry.base <= spec.retry.cap, "{}", spec.kind);
            let example = (spec.example)();
            let job = enqueue(&spec, &example);
            assert_eq!(job.payload, example, "{}", spec.kind);
            assert_eq!(job.kind, spec.kind);
            let redacted = (spec.redact)(&example);
            assert_eq!(
                redacted.as_object().map(|o| o.keys().collect::<Vec<_>>()),
                example.as_object().map(|o| o.keys().collect::<Vec<_>>()),
                "{}",
                spec.kind
            );
        }
    }

    #[test]
    fn spec_finds_kinds_by_name() {
        assert_eq!(spec("send_dm").map(|spec| spec.queue), Some("messages"));
        assert_eq!(
            spec("provision_client").map(|spec| spec.max_attempts),
            Some(10)
        );
        assert!(spec("send_email").is_none());
        assert!(spec("").is_none());
    }

    #[test]
    fn a_payload_of_the_wrong_kind_is_rejected() {
        let dm = (SendDm::spec().example)();
        let error = crate::job::NewJob::from_json(
            &ProvisionClient::spec(),
            &dm,
            crate::job::EnqueueOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, InvalidJob::Payload { kind, reason }
                if kind == "provision_client" && reason.contains("unknown field `text`")),
            "{error}"
        );
    }
}
