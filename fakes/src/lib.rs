//! Fakes of the outside services jobq talks to, for tests and for developing without them.
//!
//! - [`sui`]: an S-UI panel (`/apiv2` with the `Token` header, `/api` with the cookie session,
//!   the `{success,msg,obj}` envelope, the clients table, the subscription listener), following
//!   `docs/panel-api.md`, with fault injection from tests (a handle) and from other processes
//!   (an admin HTTP endpoint).
//!
//! - [`discord`]: Discord's REST API v10 (DM channels, sending, a seeded channel history), for
//!   serenity's proxy setting, with closed DMs, 429s and dropped connections.
//! - [`telegram`]: the Telegram Bot API (`/bot{token}/{method}`, sends recorded, `getUpdates`
//!   long polling of pushed updates), for teloxide's `set_api_url`, with blocked users,
//!   deactivated and unknown chats, 429s and dropped connections.
//!
//! This crate depends on no crate of jobq's: it stands for the outside world.

mod common;
pub mod discord;
pub mod sui;
pub mod telegram;
