//! Operations composed of several requests sent through the whole stack, as methods of
//! [`Pipeline`](crate::Pipeline): forks and retention ([`lifecycle`]), and the cleanup of
//! stranded reservations ([`maintenance`]), and conveniences of a conversation
//! ([`conversation`]: pop the latest messages), and [`compaction`] (summaries written when a
//! thread's tail outgrows a budget).

pub mod compaction;
mod conversation;
mod lifecycle;
mod maintenance;
