//! `jobq enqueue KIND PAYLOAD_JSON [--key K] [--at RFC3339] [--priority N]`: text from a shell
//! or a script, parsed into a job or refused with an error naming what is wrong.

use chrono::{DateTime, Utc};
use jobs::job::InvalidJob;
use jobs::{EnqueueOptions, JobSpec, NewJob};

/// The command's arguments as typed.
#[derive(Debug, Clone, Default)]
pub struct EnqueueRequest {
    pub kind: String,
    pub payload: String,
    pub key: Option<String>,
    pub at: Option<String>,
    pub priority: Option<i16>,
    pub max_attempts: Option<u32>,
    pub queue: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnqueueInputError {
    #[error("PAYLOAD_JSON is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("--at '{value}' is not an RFC 3339 time (like 2026-11-22T10:00:00Z): {reason}")]
    BadTime { value: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] InvalidJob),
}

/// Parses the request against the known kinds: nothing reaches the queue unless it all parses.
pub fn parse(request: &EnqueueRequest, kinds: &[JobSpec]) -> Result<NewJob, EnqueueInputError> {
    let spec = kinds
        .iter()
        .find(|s| s.kind == request.kind)
        .ok_or_else(|| InvalidJob::UnknownKind {
            kind: request.kind.clone(),
            known: kinds.iter().map(|s| s.kind).collect::<Vec<_>>().join(", "),
        })?;
    let payload = jobs::job::payload_from_text(&request.payload)
        .map_err(|e| EnqueueInputError::MalformedJson(e.to_string()))?;
    let run_at = request.at.as_deref().map(parse_time).transpose()?;
    let options = EnqueueOptions {
        key: request.key.clone(),
        run_at,
        priority: request.priority,
        max_attempts: request.max_attempts,
        queue: request.queue.clone(),
    };
    Ok(NewJob::from_json(spec, &payload, options)?)
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, EnqueueInputError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| EnqueueInputError::BadTime {
            value: value.to_string(),
            reason: e.to_string(),
        })
}
