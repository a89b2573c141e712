//! persist-tests' one integration-test binary: every test file is a module of it, because each
//! test binary links the whole dependency tree (one link instead of one per file).

mod architecture;
mod conformance_stacks;
mod docs;
mod feed;
mod read_path;
mod send_futures;
mod sqlite_concurrent_open;
mod sqlite_crash;
mod sse_feed;
mod vector_index_crash;
mod working_memory_processes;
