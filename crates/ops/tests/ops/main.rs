//! persist-ops's one integration-test binary: every test file is a module of it, because
//! each test binary links the whole dependency tree (one link instead of one per file).

mod compaction;
mod fork_vectors;
mod live;
mod pop;
mod scoped;
