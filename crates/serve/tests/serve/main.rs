//! persist-serve's integration tests but one, in one binary: every test file is a module of it,
//! because each test binary links the whole dependency tree (one link instead of one per file).
//! `tests/metrics.rs` stays a binary of its own: it installs the process's `metrics` recorder,
//! which the servers of these tests would count into.

mod api;
mod mount;
mod observability;
mod openapi;
mod operations;
mod recall;
mod reference;
mod support;
mod ui;
