//! The Conversations API: its eight routes ([`conversations`]), the items they write and read
//! ([`items`]: made whole, converted, answered), and the `Idempotency-Key` their writes take
//! ([`idempotency`]). On the HTTP plumbing and the request state; the extensions build on it.

pub(crate) mod conversations;
pub(crate) mod idempotency;
pub(crate) mod items;
