//! persist-cli's one integration-test binary: every test file is a module of it, because each
//! test binary links the whole dependency tree (one link instead of one per file).

mod branches;
mod cli;
mod compaction;
mod failover;
mod mcp;
mod migrate;
mod move_tenant;
mod search;
mod serve_in_production;
mod serve_logs;
mod support;
mod vectors;
