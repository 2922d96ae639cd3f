//! Fakes of the outside services jobq talks to, for tests and for developing without them.
//!
//! - [`sui`]: an S-UI panel (`/apiv2` with the `Token` header, `/api` with the cookie session,
//!   the `{success,msg,obj}` envelope, the clients table, the subscription listener), following
//!   `shared/reference/panel-api.md`, with fault injection from tests (a handle) and from other
//!   processes (an admin HTTP endpoint).
//!
//! This crate depends on no crate of jobq's: it stands for the outside world.

pub mod sui;
