//! What crates built on this one need and an app does not: backends, layers, composed
//! operations, shards. Public so those crates can live outside this one (as `sqlx-core`'s
//! driver prelude and OpenDAL's `raw` are), and no part of the API an app calls: nothing here
//! is needed to store or read a conversation, and a confined handle's guarantees
//! ([`Scoped`]) hold only for code that does not reach in here.

use crate::model::error::PersistError;
use crate::pipeline::{Pipeline, Scoped};

pub use crate::context_setter;
pub use crate::model::id_checks::{tenant_from_key, tenant_key};
pub use crate::model::json_numbers::{integer_beyond_64_bits, json_numbers};
pub use crate::model::offset::{parts_continue, streamed_text, with_text};
pub use crate::pipeline::{BoxBackend, BoxFuture, take_ready};
pub use crate::request::merge;

/// The pipeline behind a [`Scoped`] handle, unconfined: for composed operations that send a
/// scoped handle's calls with its context (see [`Scoped::context`]).
pub fn scoped_pipeline(scoped: &Scoped) -> &Pipeline {
    scoped.pipeline()
}

/// The refusal a scoped handle answers to a request across tenants (`Rejected`).
pub fn across_tenants_refused() -> PersistError {
    crate::pipeline::scoped::across_tenants()
}

/// Every message `listing` reaches, page after page (from its position on, in its order), with
/// the items of every page that did not open: for operations that copy or check a whole thread.
///
/// # Errors
///
/// The first error of a page's read.
pub async fn list_every(
    pipeline: &Pipeline,
    listing: crate::read::ListMessages,
) -> crate::Result<crate::Page<crate::Message>> {
    pipeline.list_every(listing).await
}
