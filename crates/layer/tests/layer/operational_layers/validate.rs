//! ValidateLayer: writes over each limit refused before the store.

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::{Limits, ValidateLayer};
use persist::memory::MemoryBackend;
use persist::{Content, MessageId, Metadata, PersistArgs, PersistError, Pipeline, Role};
use serde_json::json;

use super::{keyed_add, thread};

#[tokio::test]
async fn validate_refuses_writes_over_each_limit_before_the_store() {
    let store = MemoryBackend::new();
    let limits = Limits::new().max_content_bytes(100).max_metadata_bytes(50).max_metadata_depth(2).max_id_bytes(10);
    let pipeline = Pipeline::builder().layer(ValidateLayer::new(limits)).build(store.clone());
    let cases: Vec<(PersistArgs, &str)> = vec![
        (Add::new(thread("t"), Role::User, Content::text("x".repeat(200))).into(), "content"),
        (
            Add::new(thread("t"), Role::User, Content::text("x"))
                .with_metadata(Metadata::new().with("k", json!("v".repeat(60))))
                .into(),
            "metadata",
        ),
        (
            Reserve::new(thread("t"), Role::Assistant)
                .with_metadata(Metadata::new().with("k", json!({"a": {"b": 1}})))
                .into(),
            "metadata",
        ),
        (Add::new(thread("a-very-long-thread"), Role::User, Content::text("x")).into(), "thread_id"),
        (keyed_add("t", "an-overlong-key").into(), "idempotency_key"),
        (
            UpdateContent::new(thread("t"), MessageId::new("message-id-too-long").unwrap(), Content::text("x")).into(),
            "message_id",
        ),
    ];
    for (args, field) in cases {
        match pipeline.execute(args).await {
            Err(PersistError::InvalidInput { field: got, reason }) => {
                assert_eq!(got, field);
                assert!(reason.contains("limit"), "{reason}");
            }
            other => panic!("expected InvalidInput on {field}, got {other:?}"),
        }
    }
    assert_eq!(store.message_count(), 0);
    pipeline.add(Add::new(thread("t"), Role::User, Content::text("fits"))).await.unwrap();
}
