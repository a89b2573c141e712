//! Cross-crate tests: whole stacks over every backend. The tests are in `tests/tests/`.

/// The README's Rust examples, compiled and run as doc tests: the README cannot show code that
/// does not build. (Here, not in the facade crate, for the features and dev-dependencies they
/// use: PostgreSQL, encryption, the conformance suite.)
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
