//! The embedded schema migrations: the files of `migrations/`, as `sqlx::migrate!` would embed
//! them (the same versions, SQL and checksums, so a store it migrated opens as it is), built
//! without the macro, whose compile-time copy of the database driver doubled the work of a
//! fresh build.

use std::sync::LazyLock;

use persist_core::Result;
use sqlx::PgConnection;
use sqlx::migrate::Migrator;

use crate::error::map_sqlx;

/// Each file of `migrations/`: its version, its description (the words of its name) and its SQL.
const FILES: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "tenant in identity", include_str!("../migrations/0002_tenant_in_identity.sql")),
    (3, "change feed", include_str!("../migrations/0003_change_feed.sql")),
    (4, "values", include_str!("../migrations/0004_values.sql")),
    (5, "interrupted replies", include_str!("../migrations/0005_interrupted_replies.sql")),
    (6, "idempotency key index", include_str!("../migrations/0006_idempotency_key_index.sql")),
    (7, "live replies", include_str!("../migrations/0007_live_replies.sql")),
    (8, "branches", include_str!("../migrations/0008_branches.sql")),
    (9, "summaries", include_str!("../migrations/0009_summaries.sql")),
    (10, "search", include_str!("../migrations/0010_search.sql")),
    // Named "compact" when they shipped (a store's record keeps the name); the storage form
    // they introduced is called packed everywhere else, compaction being the summaries'.
    (11, "compact rows", include_str!("../migrations/0011_compact_rows.sql")),
    (12, "content form in plpgsql", include_str!("../migrations/0012_content_form_in_plpgsql.sql")),
    (13, "thread activity by second", include_str!("../migrations/0013_thread_activity_by_second.sql")),
    (14, "messages view", include_str!("../migrations/0014_messages_view.sql")),
    (15, "embeddings", include_str!("../migrations/0015_embeddings.sql")),
    (16, "working memory", include_str!("../migrations/0016_working_memory.sql")),
    (17, "working memory feed", include_str!("../migrations/0017_working_memory_feed.sql")),
    (18, "spent keys", include_str!("../migrations/0018_spent_keys.sql")),
    (19, "records", include_str!("../migrations/0019_records.sql")),
];

/// The migrations, in version order.
pub(crate) static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| persist_sql_kit::migrator(FILES));

/// The same migrations without sqlx's session-level lock, for a run inside one transaction
/// (behind a transaction pooler), under [`lock_for_transaction`] instead.
pub(crate) static MIGRATOR_IN_TRANSACTION: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = persist_sql_kit::migrator(FILES);
    migrator.set_locking(false);
    migrator
});

/// Takes, until the transaction ends, the advisory lock [`MIGRATOR`] takes for the session (the
/// same key, sqlx's: the database name's CRC-32 times `0x3d32ad9e`), so that migrations run
/// directly and through a pooler take turns.
pub(crate) async fn lock_for_transaction(conn: &mut PgConnection) -> Result<()> {
    let map = |e| map_sqlx("taking the migrations' lock", e);
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *conn).await.map_err(map)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(0x3d32_ad9e * i64::from(crc32(database.as_bytes())))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    Ok(())
}

/// CRC-32 (ISO-HDLC, the zlib one), as sqlx hashes the database's name for its lock.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Every migration this build carries, with the checksum of its SQL.
pub(crate) fn known() -> impl Iterator<Item = (persist_core::schema::SchemaMigration, Vec<u8>)> {
    persist_sql_kit::known(&MIGRATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `migrations/` is embedded, under its version and description, with its SQL
    /// as the file holds it (a new file must be listed here).
    #[test]
    fn every_migration_file_is_embedded_as_the_macro_would() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        assert_eq!(persist_sql_kit::differences_from_dir(&dir, FILES), Vec::<String>::new());
        let versions: Vec<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
        assert_eq!(versions, FILES.iter().map(|&(version, ..)| version).collect::<Vec<_>>());
    }

    #[test]
    fn the_lock_key_is_sqlx_s() {
        // The CRC-32 check value, and zlib's CRC-32 of `test`.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"test"), 0xd87f_7e0c);
    }
}
