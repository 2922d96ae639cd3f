//! What turns outside requests into jobs. Today: the `jobq enqueue` command's input, parsed
//! into a [`jobs::NewJob`]. The Telegram and Discord bots will live here too.

pub mod admin_jobs;
pub mod command_limit;
pub mod discord;
pub mod enqueue_command;
pub mod telegram;
