//! The contract's tests that need nothing but its public API: one module per source file they
//! were written beside.

mod args;
mod boxed;
mod branch;
mod consistency;
mod content;
mod embedding;
mod error;
mod feed_memory;
mod id;
mod lease;
mod part;
mod read;
mod read_threads;
mod schema;
mod search;
mod search_text;
mod session;
mod spent;
mod stored_vectors;
mod summary;
mod vector;
mod working;
