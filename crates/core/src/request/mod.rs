//! What a caller asks, family by family, and what comes back: the writes ([`write`]), reads
//! ([`read`]), session requests ([`session`]), restores ([`restore`]), values set once
//! ([`once`]), leases ([`lease`]), summaries ([`summary`]), branches ([`branch`]), search
//! ([`search`]), embeddings and nearest neighbours ([`vector`]), working memory ([`working`]), records ([`records`]), idempotency keys that outlive their messages ([`spent`]), the one enum that carries any of them down the stack ([`args`]) and the one
//! enum of answers ([`result`]), and how answers of several stores to one request across
//! threads merge ([`merge`]). Every request embeds a [`Context`](crate::Context); the feed's requests are in
//! [`feed`](crate::feed).

pub mod args;
pub mod branch;
#[macro_use]
pub(crate) mod filter;
pub mod lease;
pub mod merge;
pub mod once;
pub mod read;
pub mod records;
mod repeat;
pub mod restore;
pub(crate) mod result;
pub mod search;
pub mod session;
pub mod spent;
pub(crate) mod stored_vectors;
pub mod summary;
pub(crate) mod turn;
pub(crate) mod update_content;
pub mod vector;
pub mod working;
pub(crate) mod write;
