//! persist-postgres's one integration-test binary: every test file is a module of it, because
//! each test binary links the whole dependency tree (one link instead of one per file).
//!
//! The modules' tests run as threads of one process: what is global to it (the `metrics`
//! recorder of `replicas`, the standby's replay, which `replicas` pauses, a `tracing`
//! subscriber) is shared with care, see each module.

mod conformance;
mod connections;
mod failover;
mod feed;
mod groups;
mod messages_view;
mod packed_rows;
mod pgvector;
mod pooler;
mod processes;
mod purge;
mod replica_conformance;
mod replicas;
mod search;
mod spent_keys;
mod statements;
mod statistics;
mod support;
mod upgrades;
