//! The worker runtime, in River's shape: a few plain parts, each in its own file.
//!
//! - [`handler`]: what a job kind's handler is, how its result is classified, the registry.
//! - [`runtime`]: starts and stops everything below for one process.
//! - [`fetcher`]: the fetch loop of one queue, claiming only as many jobs as it has free slots.
//! - [`executor`]: runs one job with its timeout, catches panics, classifies the outcome.
//! - [`completer`]: writes finished jobs in batches, and counts outcomes per minute.
//! - [`leases`]: the jobs this process holds, and the lease keeper that extends them.
//! - [`metrics`]: this process's counters, gauges and histograms, and `GET /metrics`.
//! - [`maintenance`]: rescuer (expired leases), scheduler, cleaner, heartbeat.
//! - [`failure_alerts`]: tells the admins by DM when jobs fail for good (one digest a minute).
//! - [`periodic`]: enqueues the periodic jobs of the config, once per period across processes.
//! - [`chat`]: Telegram and Discord DMs behind `Messenger`, with classified errors.
//! - [`testkit`]: job kinds for the engine's own tests and benchmarks.
//! - [`transcripts`]: Discord history → escaped HTML → object store, for `upload_transcript`.

pub mod chat;
pub mod completer;
pub mod executor;
pub mod failure_alerts;
pub mod fetcher;
pub mod handler;
pub mod handlers;
pub mod leases;
pub mod maintenance;
pub mod metrics;
pub mod panel;
pub mod periodic;
pub mod runtime;
pub mod testkit;
pub mod transcripts;

pub use handler::{Handler, JobContext, JobError, Registry};
pub use runtime::{Runtime, RuntimeOptions};
