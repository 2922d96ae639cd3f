//! Typed jobs and the durable queue they live in.
//!
//! - [`kinds`]: the product's job kinds, each a typed payload that parses at enqueue.
//! - [`queue`]: the [`Queue`] handle: connect, enqueue, fetch and complete (for the worker runtime),
//!   inspection and repair (for admins).
//! - [`driver`]: one module per database, behind the [`driver::Driver`] trait.
//! - [`metrics`]: the enqueue and outside-call counters every process shares, and rendering.
//! - [`configuration`]: settings from `config/default.toml`, a config file, `JOBQ_*` variables.
//! - [`limits`]: rate and concurrency limits shared by every worker process, in the database.
//! - [`ledger`]: the messages sent, by job key, so a retried send does not send again.
//! - [`subscriptions`]: the subscriptions sold (one table, both backends); [`secret_key`]: the key
//!   their unguessable client names derive from.
//! - [`orders`]: what the bots keep: orders placed with `/buy`, dialogue state, bot admins.

pub mod audit;
pub mod bot_tokens;
pub mod configuration;
pub mod db;
pub mod failures;
pub mod job;
pub mod kinds;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod orders;
pub mod queue;
pub mod redact;
pub mod retry;
pub mod schema;
pub mod secret_key;
pub mod state;
pub mod subscriptions;

pub use db::driver;
pub use job::{EnqueueOptions, Job, JobSpec, NewJob};
pub use queue::{Enqueued, Queue};
pub use retry::RetryPolicy;
pub use state::JobState;
