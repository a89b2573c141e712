//! The axum server example of persist; run it with
//! `cargo run -p persist-example-server --example sse_server`.
