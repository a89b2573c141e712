//! persist-swiftide's one integration-test binary: every test file is a module of it, because
//! each test binary links the whole dependency tree (one link instead of one per file).

mod agent;
mod compacted;
mod history;
