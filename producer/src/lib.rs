//! What turns outside requests into jobs:
//!
//! - [`enqueue_command`]: the `jobq enqueue` command's input, parsed into a [`jobs::NewJob`].
//! - [`telegram`]: the Telegram bot (`jobq telegram`, long polling or a webhook).
//! - [`discord`]: the Discord bot (`jobq discord`), slash commands in, jobs out.
//! - [`admin_jobs`]: the job commands both bots offer their admins (failed, retry, discard,
//!   stats), audited like the dashboard's.
//! - [`command_limit`]: the per-user command rate both bots apply, across every bot process.

pub mod admin_jobs;
pub mod command_limit;
pub mod discord;
pub mod enqueue_command;
pub mod telegram;
