//! The shop around the queue: its typed jobs and the data its bots and handlers keep. The
//! engine itself is the `queue` crate, re-exported here so that one import path serves both.
//!
//! - [`kinds`]: the product's job kinds, each a typed payload that parses at enqueue.
//! - [`configuration`]: settings from `config/default.toml`, a config file, `JOBQ_*` variables.
//! - [`ledger`]: the messages sent, by job key, so a retried send does not send again.
//! - [`subscriptions`]: the subscriptions sold (one table, both backends); [`secret_key`]: the key
//!   their unguessable client names derive from; [`redact`]: masking wherever they are shown.
//! - [`orders`]: what the bots keep: orders placed with `/buy`, dialogue state, bot admins.
//! - [`bot_tokens`]: the bots' token variables, shapes and masking.

pub mod bot_tokens;
pub mod configuration;
pub mod kinds;
pub mod ledger;
pub mod orders;
pub mod redact;
pub mod secret_key;
pub mod subscriptions;
pub mod text;

pub use ::queue::{
    EnqueueOptions, Enqueued, Job, JobSpec, JobState, NewJob, Queue, RetryPolicy, Rules, audit, db,
    driver, failures, job, limits, metrics, queue, retry, schema, settings, state,
};
