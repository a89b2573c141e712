//! The package of `examples/swiftide_agent.rs` (run it with
//! `cargo run -p persist-example-swiftide --example swiftide_agent`): swiftide's agent is built
//! for it alone.
