//! What a job is before it is in the queue: a typed payload ([`Job`]), its kind's fixed
//! properties ([`JobSpec`]), and the row about to be inserted ([`NewJob`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::retry::RetryPolicy;

/// A kind of job: a payload type that parses (not merely validates) from JSON, plus the queue,
/// attempts, timeout and retry policy every job of the kind gets unless its enqueue says otherwise.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    const RULES: Rules;
    const KIND: &'static str = Self::RULES.kind;

    /// The idempotency key used when the enqueuer gives none, for kinds that are naturally unique.
    fn default_key(&self) -> Option<String> {
        None
    }

    /// A valid payload, shown by `jobq kinds`.
    fn example() -> Self;

    /// The payload as shown to people: anything that grants access by being known is masked.
    fn redact(payload: &Value) -> Value {
        payload.clone()
    }

    fn spec() -> JobSpec {
        JobSpec {
            kind: Self::RULES.kind,
            queue: Self::RULES.queue,
            max_attempts: Self::RULES.max_attempts,
            timeout: Self::RULES.timeout,
            retry: Self::RULES.retry,
            max_snoozes: Self::RULES.max_snoozes,
            example: || serde_json::to_value(Self::example()).unwrap_or(Value::Null),
            parse: parse_as::<Self>,
            redact: Self::redact,
        }
    }
}

/// A kind's name and the queue, attempts, timeout and retry policy its jobs get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub kind: &'static str,
    pub queue: &'static str,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How often a job of the kind may wait ("not now": a 429, a limiter or lock with no room)
    /// without spending an attempt; past it the job fails, saying what it waited for.
    pub max_snoozes: u32,
}

/// Waits a job may make by default: with Retry-Afters of a second or more, minutes of a panel
/// or chat API saying "slow down" before the job gives up.
pub const DEFAULT_MAX_SNOOZES: u32 = 200;

impl Rules {
    /// `kind` runs on `queue`, at most `max_attempts` times of at most `timeout` each, backing
    /// off exponentially from one second to an hour between attempts unless told otherwise.
    pub const fn new(
        kind: &'static str,
        queue: &'static str,
        max_attempts: u32,
        timeout: Duration,
    ) -> Rules {
        Rules {
            kind,
            queue,
            max_attempts,
            timeout,
            retry: RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(3600)),
            max_snoozes: DEFAULT_MAX_SNOOZES,
        }
    }

    /// Backs off exponentially from `first` to `cap` between attempts.
    pub const fn backoff(self, first: Duration, cap: Duration) -> Rules {
        Rules {
            retry: RetryPolicy::exponential(first, cap),
            ..self
        }
    }
}

/// A payload that parsed as its kind: the normalised JSON to store and the kind's default key.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPayload {
    pub payload: Value,
    pub default_key: Option<String>,
}

fn parse_as<J: Job>(payload: &Value) -> Result<ParsedPayload, String> {
    let job: J = serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
    Ok(ParsedPayload {
        default_key: job.default_key(),
        payload: serde_json::to_value(&job).map_err(|e| e.to_string())?,
    })
}

/// A kind's properties with the payload type erased, for registries and the CLI.
#[derive(Clone, Copy)]
pub struct JobSpec {
    pub kind: &'static str,
    pub queue: &'static str,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub max_snoozes: u32,
    pub example: fn() -> Value,
    pub parse: fn(&Value) -> Result<ParsedPayload, String>,
    pub redact: fn(&Value) -> Value,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("kind", &self.kind)
            .field("queue", &self.queue)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How one enqueue differs from its kind's defaults.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Who enqueues decides (the id of whatever asked for the effect: a request, an update).
    pub key: Option<String>,
    pub run_at: Option<DateTime<Utc>>,
    /// Higher runs first; -100 to 100, default 0.
    pub priority: Option<i16>,
    pub max_attempts: Option<u32>,
    pub queue: Option<String>,
}

pub const PRIORITY_RANGE: std::ops::RangeInclusive<i16> = -100..=100;
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
pub const MAX_KEY_LEN: usize = 255;

/// Why a job could not be built for the queue. Nothing is written when this is returned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidJob {
    #[error("unknown job kind '{kind}': known kinds are {known}")]
    UnknownKind { kind: String, known: String },
    #[error("payload of {kind} does not parse: {reason}")]
    Payload { kind: String, reason: String },
    #[error("idempotency key must be 1 to {MAX_KEY_LEN} characters, got {0}")]
    KeyLength(usize),
    #[error("priority {0} is out of range: allowed -100 to 100")]
    Priority(i16),
    #[error("max attempts {0} is out of range: allowed 1 to 1000")]
    MaxAttempts(u32),
    #[error("queue name '{0}' is invalid: 1 to 64 characters of a-z, 0-9, '_' and '-'")]
    QueueName(String),
}

/// A row ready to insert: kind, queue and options resolved, payload parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub queue: String,
    pub payload: Value,
    pub priority: i16,
    pub max_attempts: u32,
    pub run_at: Option<DateTime<Utc>>,
    pub key: Option<String>,
}

impl NewJob {
    /// From a typed job: its payload is valid by construction.
    pub fn new<J: Job>(job: &J, options: EnqueueOptions) -> Result<Self, InvalidJob> {
        let payload = serde_json::to_value(job).map_err(|e| InvalidJob::Payload {
            kind: J::KIND.to_string(),
            reason: e.to_string(),
        })?;
        let parsed = ParsedPayload {
            payload,
            default_key: job.default_key(),
        };
        Self::resolve(&J::spec(), parsed, options)
    }

    /// From JSON of a kind named at run time (the CLI, scripts): parsed by the kind's type.
    pub fn from_json(
        spec: &JobSpec,
        payload: &Value,
        options: EnqueueOptions,
    ) -> Result<Self, InvalidJob> {
        let parsed = (spec.parse)(payload).map_err(|reason| InvalidJob::Payload {
            kind: spec.kind.to_string(),
            reason,
        })?;
        Self::resolve(spec, parsed, options)
    }

    fn resolve(
        spec: &JobSpec,
        parsed: ParsedPayload,
        options: EnqueueOptions,
    ) -> Result<Self, InvalidJob> {
        // PostgreSQL's jsonb cannot hold U+0000: refuse it here, on both backends alike.
        if holds_nul(&parsed.payload) {
            return Err(InvalidJob::Payload {
                kind: spec.kind.to_string(),
                reason: "contains a NUL character (\\u0000), which the queue cannot store".into(),
            });
        }
        let key = options.key.or(parsed.default_key);
        if let Some(key) = &key {
            let len = key.chars().count();
            if len == 0 || len > MAX_KEY_LEN {
                return Err(InvalidJob::KeyLength(len));
            }
        }
        let priority = options.priority.unwrap_or(0);
        if !PRIORITY_RANGE.contains(&priority) {
            return Err(InvalidJob::Priority(priority));
        }
        let max_attempts = options.max_attempts.unwrap_or(spec.max_attempts);
        if !MAX_ATTEMPTS_RANGE.contains(&max_attempts) {
            return Err(InvalidJob::MaxAttempts(max_attempts));
        }
        let queue = options.queue.unwrap_or_else(|| spec.queue.to_string());
        if !is_valid_queue_name(&queue) {
            return Err(InvalidJob::QueueName(queue));
        }
        Ok(NewJob {
            kind: spec.kind.to_string(),
            queue,
            payload: parsed.payload,
            priority,
            max_attempts,
            run_at: options.run_at,
            key,
        })
    }
}

pub fn is_valid_queue_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Whether any string of `value` (or any key of its objects) holds U+0000, as decoded (the six
/// characters `\u0000` written in a text are harmless and allowed).
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// The key an effect of a job is recorded under: the job's idempotency key, else `job:<id>`
/// (unique per job, so a retried attempt of the same job finds its own effect).
pub fn key_or_id(job_key: Option<&str>, job_id: i64) -> String {
    match job_key {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => format!("job:{job_id}"),
    }
}

/// Payload text as JSON, refusing an object that names a key twice: serde_json keeps the last
/// silently, so `{"text": "hi", "text": "bye"}` would send what the writer may not have meant.
/// Every door that takes payload text (the CLI, scripts) reads it through this.
pub fn payload_from_text(text: &str) -> Result<Value, serde_json::Error> {
    use serde::Deserialize;
    let mut reader = serde_json::Deserializer::from_str(text);
    let value = NoDuplicateKeys::deserialize(&mut reader)?;
    reader.end()?;
    Ok(value.0)
}

/// A JSON value read with every object's keys checked for repeats.
struct NoDuplicateKeys(Value);

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        reader
            .deserialize_any(NoDuplicateKeysVisitor)
            .map(NoDuplicateKeys)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(NoDuplicateKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let NoDuplicateKeys(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod payload_text_tests {
    use super::payload_from_text;
    use serde_json::json;

    #[test]
    fn a_repeated_key_is_refused_naming_it_at_any_depth() {
        for (text, key) in [
            (r#"{"text": "hi", "text": "bye"}"#, "\"text\""),
            (r#"{"to": {"chat": 1, "chat": 2}}"#, "\"chat\""),
            (r#"[{"a": 1}, {"b": 1, "b": 1}]"#, "\"b\""),
        ] {
            let error = payload_from_text(text).expect_err(text).to_string();
            assert!(
                error.contains(key) && error.contains("twice"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn other_json_reads_as_serde_json_reads_it() {
        for text in [
            r#"{"a": 1, "b": [1, 2.5, -3, null, true, "x"], "c": {"a": 1}}"#,
            r#""é\u0000""#,
            "18446744073709551615",
            "[]",
        ] {
            let expected: serde_json::Value = serde_json::from_str(text).expect(text);
            assert_eq!(payload_from_text(text).expect(text), expected, "{text}");
        }
        assert!(payload_from_text(r#"{"a": 1} trailing"#).is_err());
        assert_eq!(payload_from_text("{}").expect("{}"), json!({}));
    }
}
