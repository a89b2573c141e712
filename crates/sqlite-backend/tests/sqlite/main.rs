//! persist-sqlite's one integration-test binary: every test file is a module of it, because
//! each test binary links the whole dependency tree (one link instead of one per file).

mod conformance;
mod lane;
mod live;
mod migrate;
mod packed_feed;
mod packed_messages;
mod packed_rows;
mod purge;
mod search;
mod search_waiting;
mod sqlite;
mod statements;
mod support;
mod upgrade_to_summaries;
mod upgrades;
