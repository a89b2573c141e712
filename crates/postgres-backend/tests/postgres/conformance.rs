//! The whole conformance suite against a real PostgreSQL: one schema per check, two pools
//! racing for the two-handle checks, reopen durability.

use crate::support::PostgresFactory;

persist_conformance::conformance_tests!(PostgresFactory);
