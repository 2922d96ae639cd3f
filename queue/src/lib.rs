//! The durable queue engine: jobs, their states and retries, the queue handle, the database
//! layer under it, schema versions, the audit log, metrics, and the generic parts that any
//! product around it shares (rate and concurrency limits across processes, the failed-job
//! cursor). It knows nothing of what the jobs do: the kinds a program runs are handed to it.
//!
//! - [`job`]: the [`Job`] trait, [`JobSpec`], [`NewJob`] and enqueue options.
//! - [`queue`]: the [`Queue`] handle: connect, enqueue (also inside a caller's transaction),
//!   fetch and complete (for the worker runtime), inspection and repair (for admins).
//! - [`db`]: the database layer, and [`driver`], the queue's own statements per dialect.
//! - [`state`]: job states and the repairs each allows; [`retry`]: backoff.
//! - [`schema`], [`audit`], [`metrics`], [`limits`], [`failures`], [`settings`].

pub mod audit;
pub mod db;
pub mod failures;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod schema;
pub mod settings;
pub mod state;

pub use db::driver;
pub use job::{EnqueueOptions, Job, JobSpec, NewJob, Rules};
pub use queue::{Enqueued, Queue};
pub use retry::RetryPolicy;
pub use state::JobState;
