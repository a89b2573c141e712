//! Runnable examples for persist; run one with `cargo run --example NAME`.
