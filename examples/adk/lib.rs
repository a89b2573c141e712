//! The package of `examples/adk_agent.rs` (run it with
//! `cargo run -p persist-example-adk --example adk_agent`): adk-rust's runner and agent are
//! built for it alone.
