//! persist's extensions of the API, under `/v1/persist/` (so no standard answer changes), one
//! file each: the caller's conversations ([`listing`]), an atomic pop ([`pop`]), a conversation
//! by the client's id ([`ensure`]) and its messages as the AI SDK's `UIMessage[]`
//! ([`ui_messages`]), full-text search ([`search`]), semantic recall ([`recall`]), a
//! conversation compacted ([`compacted`]), its branches ([`branches`]), its change feed
//! ([`events`]), a live reply followed and stopped ([`live`]) and written ([`replies`]); and the
//! probes (`/health`, `/ready`: [`probes`]). What two of them share: the paging cursors
//! ([`cursor`]).
//!
//! On the HTTP plumbing, the request state and the Conversations API (its conversations and
//! items), and the UI message stream of [`ui`](crate::ui).

pub(crate) mod branches;
pub(crate) mod compacted;
pub(crate) mod cursor;
pub(crate) mod ensure;
pub(crate) mod events;
pub(crate) mod listing;
pub(crate) mod live;
pub(crate) mod pop;
pub(crate) mod probes;
pub(crate) mod recall;
pub(crate) mod replies;
pub(crate) mod search;
pub(crate) mod ui_messages;
