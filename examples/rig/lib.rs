//! The package of `examples/rig_agent.rs` (run it with
//! `cargo run -p persist-example-rig --example rig_agent`): rig and its agent are built for it
//! alone.
