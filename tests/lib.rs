//! Cross-crate tests, in `tests/tests/`: whole stacks over every backend, several processes on
//! one store, crashes, the architecture, and the documentation's examples. What one crate does is
//! tested beside it (`crates/*/tests`: `cargo test -p persist-shard` tests the shards).

/// The Rust examples of the README and of every chapter under `docs/`, compiled and run as doc
/// tests: no page can show code that does not build. (Here, not in the facade crate, for the
/// features and dev-dependencies they use: PostgreSQL, encryption, the conformance suite.)
/// `tests/cross_crate/docs.rs` fails when a Markdown file with Rust examples is missing here.
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../README.md")]
    pub struct Readme;
    #[doc = include_str!("../crates/persist/README.md")]
    pub struct CrateReadme;
    #[doc = include_str!("../docs/guide/contract.md")]
    pub struct Contract;
    #[doc = include_str!("../docs/guide/turns-and-branches.md")]
    pub struct TurnsAndBranches;
    #[doc = include_str!("../docs/guide/compaction.md")]
    pub struct Compaction;
    #[doc = include_str!("../docs/guide/tenancy.md")]
    pub struct Tenancy;
    #[doc = include_str!("../docs/guide/search-and-memory.md")]
    pub struct SearchAndMemory;
    #[doc = include_str!("../docs/guide/feed-and-live-replies.md")]
    pub struct FeedAndLiveReplies;
    #[doc = include_str!("../docs/guide/integrations.md")]
    pub struct Integrations;
    #[doc = include_str!("../docs/guide/encryption.md")]
    pub struct Encryption;
    #[doc = include_str!("../docs/backends.md")]
    pub struct Backends;
    #[doc = include_str!("../docs/extending.md")]
    pub struct Extending;
    #[doc = include_str!("../docs/migrations.md")]
    pub struct Migrations;
}
