//! Opening without migrating (`migrate(false)`): a file behind or ahead is refused, saying
//! which way and what is pending, and left as it is; `schema_status` reads where it stands.

use persist_core::{Backend, PersistError};
use persist_sqlite::SqliteBackend;

use crate::support::{add, raw, shipped_schema};

#[tokio::test]
async fn without_migrating_a_file_behind_or_ahead_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("behind.db");
    sqlx::Connection::close(shipped_schema(&dir, &path, 16).await).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let status = SqliteBackend::builder(&path).schema_status().await.unwrap();
    assert_eq!((status.applied, status.latest), (16, 25));
    let pending: Vec<_> = status.pending.iter().map(|m| (m.version, m.description.as_str())).collect();
    assert_eq!(
        pending,
        [
            (17, "compact messages"),
            (18, "messages view"),
            (19, "embeddings"),
            (20, "working memory"),
            (21, "working memory feed"),
            (22, "spent keys"),
            (23, "embed feed"),
            (24, "search pending"),
            (25, "records")
        ]
    );
    let refused = SqliteBackend::builder(&path).migrate(false).open().await.unwrap_err();
    assert!(matches!(refused, PersistError::Unsupported { .. }), "{refused:?}");
    let said = refused.to_string();
    assert!(
        said.contains(
            "schema version 16, this build needs 25 (pending: 17 compact messages, 18 messages view, 19 embeddings, \
             20 working memory, 21 working memory feed, 22 spent keys, 23 embed feed, 24 search pending, \
             25 records)"
        ),
        "{said}"
    );
    assert!(said.contains("persist migrate up"), "{said}");
    assert_eq!(SqliteBackend::builder(&path).schema_status().await.unwrap().applied, 16, "nothing applied");
    // Not even the journal mode: the refused file is as it was, no log made beside it.
    assert_eq!(std::fs::read(&path).unwrap(), before, "the refused file is unchanged");
    assert!(!dir.path().join("behind.db-wal").exists());
    // For reads only too: exactly this build's version, or refused.
    let refused = SqliteBackend::builder(&path).read_only(true).migrate(false).open().await.unwrap_err();
    assert!(refused.to_string().contains("this build needs 25"), "{refused}");
    assert!(refused.to_string().contains("behind.db"), "names the file: {refused}");

    // Migrated by a handle that does, then opened without migrating.
    SqliteBackend::open(&path).await.unwrap().close().await;
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().is_current());
    let opened = SqliteBackend::builder(&path).migrate(false).open().await.unwrap();
    opened.apply(add("t", "after")).await.unwrap();
    opened.close().await;

    // Another build's SQL recorded for a migration: refused.
    let mut conn = raw(&path).await;
    let shipped: Vec<u8> = sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 5")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 5").execute(&mut conn).await.unwrap();
    assert_eq!(SqliteBackend::builder(&path).schema_status().await.unwrap().changed, [5]);
    let refused = SqliteBackend::builder(&path).migrate(false).open().await.unwrap_err();
    assert!(refused.to_string().contains("migration 5 in the store differs"), "{refused}");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = ?1 WHERE version = 5")
        .bind(shipped)
        .execute(&mut conn)
        .await
        .unwrap();
    // One recorded as failed part-way: refused, and pending.
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 13").execute(&mut conn).await.unwrap();
    let failed = SqliteBackend::builder(&path).schema_status().await.unwrap();
    assert_eq!((failed.failed.clone(), failed.pending.len()), (vec![13], 1));
    let refused = SqliteBackend::builder(&path).migrate(false).open().await.unwrap_err();
    assert!(refused.to_string().contains("migration 13 is recorded as failed"), "{refused}");
    sqlx::query("UPDATE _sqlx_migrations SET success = 1 WHERE version = 13").execute(&mut conn).await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().is_current());

    // A newer build's migration recorded: refused.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().is_ahead());
    let refused = SqliteBackend::builder(&path).migrate(false).open().await.unwrap_err();
    assert!(refused.to_string().contains("newer than this build's 25"), "{refused}");

    // A file that does not exist: version 0, not created.
    let missing = dir.path().join("missing.db");
    assert_eq!(SqliteBackend::builder(&missing).schema_status().await.unwrap().applied, 0);
    let refused = SqliteBackend::builder(&missing).migrate(false).open().await.unwrap_err();
    assert!(matches!(refused, PersistError::Unsupported { .. }), "{refused:?}");
    assert!(!missing.exists(), "the file was not created");
}
