//! persist-encrypt's one integration-test binary: every test file is a module of it, because
//! each test binary links the whole dependency tree (one link instead of one per file).

mod at_rest;
mod conformance;
mod deltas;
mod rotation;
mod summaries;
mod support;
mod vector_index;
