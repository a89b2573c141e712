//! A purge erases a thread from PostgreSQL's tables: no row holds what it said (old row
//! versions are gone from every query at once, and from the disk at the next VACUUM).

use persist_core::args::{Add, Delete, Update};
use persist_core::{Backend, Content, Metadata, Role, ThreadId};
use persist_postgres::PostgresBackend;
use serde_json::json;
use sqlx::AssertSqlSafe;

use crate::support;

const MARKER: &str = "MARKER-erase-pg-77b1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_thread_leaves_no_row_holding_what_it_said() {
    if !support::available().await {
        return;
    }
    let mut admin = support::admin().await.unwrap();
    for purge in [false, true] {
        let schema = support::schema_name();
        let backend =
            PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(4).connect().await.unwrap();
        let id = ThreadId::new("secret").unwrap();
        for i in 0..5 {
            backend
                .apply(Add::new(id.clone(), Role::User, Content::text(format!("{MARKER} #{i}"))).into())
                .await
                .unwrap();
        }
        let titled = Update::thread(id.clone())
            .with_title(Some(format!("{MARKER} title")))
            .with_metadata(Metadata::new().with("note", json!(MARKER)));
        backend.apply(titled.into()).await.unwrap();
        let delete = if purge { Delete::purge(id.clone()) } else { Delete::thread(id.clone()) };
        backend.apply(delete.into()).await.unwrap();
        // Test-made names only: persist_test_ + hex.
        let count = format!(
            "SELECT (SELECT count(*) FROM \"{schema}\".messages WHERE content::text LIKE '%{MARKER}%') \
                  + (SELECT count(*) FROM \"{schema}\".threads \
                      WHERE concat_ws(' ', title, metadata::text) LIKE '%{MARKER}%')"
        );
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(count)).fetch_one(&mut admin).await.unwrap();
        assert_eq!(rows > 0, !purge, "purge: {purge}: {rows} rows hold the marker");
        backend.close().await;
        support::drop_schema(&schema).await;
    }
}
