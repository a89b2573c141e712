//! `messages_view` as `psql` reads it: every message with its content's JSON whole (a content
//! stored as its text alone read back as its text block), the tenant NULL for none, the parent
//! of every message but a root: the values the backend reads.

use persist_core::args::{Add, Reserve};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Context, MessageId, Metadata, Part, Role, TenantId, ThreadId};
use persist_postgres::PostgresBackend;
use serde_json::{Value, json};

use crate::support;

/// The rows of `sql` run by the `psql` client in `schema`, as JSON.
fn psql(schema: &str, sql: &str) -> std::process::Output {
    // Test-made names only: persist_test_ + hex.
    let script = format!("SET search_path TO \"{schema}\"; {sql}");
    std::process::Command::new("psql")
        .args([support::url().as_str(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", &script])
        .output()
        .expect("psql runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_every_message_from_the_view() {
    if !support::available().await {
        return;
    }
    if std::process::Command::new("psql").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have the psql client");
        eprintln!("skipped: no `psql` on PATH");
        return;
    }
    let schema = support::schema_name();
    let backend =
        PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(2).connect().await.unwrap();
    let thread = ThreadId::new("support:7").unwrap();
    backend.apply(Add::new(thread.clone(), Role::User, Content::text("Hello from persist")).into()).await.unwrap();
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    let call =
        Content::from_parts([Part::text("Looking."), Part::tool_call("c1", "weather", json!({"city": "Lisbon"}))]);
    let asked = Add::new(thread.clone(), Role::Assistant, call)
        .with_id(MessageId::new("0192f7a4-5b6c-7d8e-9fab-0123456789ab").unwrap())
        .with_metadata(Metadata::new().with("model", json!("m1")))
        .with_context(acme.clone());
    backend.apply(asked.into()).await.unwrap();
    let reply = Reserve::new(thread.clone(), Role::new("critic").unwrap()).with_context(acme.clone());
    backend.apply(reply.into()).await.unwrap();
    let mut written = Vec::new();
    for context in [Context::new(), acme] {
        let listed = backend.list(ListMessages::new(thread.clone()).include_reserved(true).with_context(context));
        written.extend(listed.await.unwrap().items);
    }
    backend.close().await;

    let out = psql(
        &schema,
        "SELECT json_agg(v ORDER BY v.tenant IS NOT NULL, v.seq) FROM (SELECT tenant, thread_id, message_id, seq, \
                parent_seq, role, status, content, metadata, version, idempotency_key, created_at, updated_at \
           FROM messages_view) v",
    );
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for ((row, message), tenant) in rows.iter().zip(&written).zip([None, Some("acme"), Some("acme")]) {
        assert_eq!(row["tenant"].as_str(), tenant);
        assert_eq!(row["thread_id"], "support:7");
        assert_eq!(row["message_id"].as_str(), Some(message.id.as_str()));
        assert_eq!((row["seq"].as_u64(), row["parent_seq"].as_u64()), (Some(message.seq), message.parent_seq));
        assert_eq!(row["role"].as_str(), Some(message.role.as_str()));
        assert_eq!(row["status"].as_str(), Some(message.status.as_str()));
        assert_eq!(Content::new(row["content"].clone()), message.content, "{row}");
        assert_eq!(row["metadata"], Value::Object(message.metadata.as_map().clone()));
        assert_eq!(row["version"].as_u64(), Some(message.version));
        assert_eq!(row["created_at"].as_i64(), Some(message.created_at.as_micros()));
        assert_eq!(row["updated_at"].as_i64(), Some(message.updated_at.as_micros()));
    }
    assert_eq!(rows[0]["content"], json!([{"type": "text", "text": "Hello from persist"}]));
    // Read only: a write through the view is refused.
    let refused = psql(&schema, "DELETE FROM messages_view");
    assert!(!refused.status.success(), "a view takes no writes");
    support::drop_schema(&schema).await;
}
