//! Cross-crate tests, in `tests/tests/`: whole stacks over every backend, several processes on
//! one store, crashes, the architecture, and the README's examples. What one crate does is
//! tested beside it (`crates/*/tests`: `cargo test -p persist-shard` tests the shards).

/// The README's Rust examples, compiled and run as doc tests: the README cannot show code that
/// does not build. (Here, not in the facade crate, for the features and dev-dependencies they
/// use: PostgreSQL, encryption, the conformance suite.)
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
