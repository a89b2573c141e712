//! A removed message's key is remembered for the builder's key retention (carried by every
//! connection as `persist.key_retention`), then forgotten.

use std::time::Duration;

use persist_core::args::{Add, Delete};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, IdempotencyKey, Role, ThreadId};
use persist_postgres::PostgresBackend;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_messages_key_is_remembered_for_the_retention_only() {
    if !support::available().await {
        return;
    }
    for (retention, remembered) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)] {
        let schema = support::schema_name();
        let backend = PostgresBackend::builder(support::url())
            .schema(schema.clone())
            .max_connections(2)
            .key_retention(retention)
            .connect()
            .await
            .unwrap();
        let thread = ThreadId::new("t").unwrap();
        let keyed = Add::new(thread.clone(), Role::User, Content::text("hi"))
            .with_idempotency_key(IdempotencyKey::new("k").unwrap());
        let first = backend.apply(keyed.clone().into()).await.unwrap();
        let id = first.message().unwrap().id.clone();
        backend.apply(Delete::message(thread.clone(), id).into()).await.unwrap();
        let again = backend.apply(keyed.into()).await.unwrap();
        assert_eq!(again.is_deduplicated(), remembered, "retention {retention:?}");
        let listed = backend.list(ListMessages::new(thread)).await.unwrap().items.len();
        assert_eq!(listed, usize::from(!remembered), "retention {retention:?}");
        backend.close().await;
        support::drop_schema(&schema).await;
    }
}
