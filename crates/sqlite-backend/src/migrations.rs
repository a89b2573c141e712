//! The embedded schema migrations: the files of `migrations/`, as `sqlx::migrate!` would embed
//! them (the same versions, SQL and checksums, so a store it migrated opens as it is), built
//! without the macro, whose compile-time copy of the database driver doubled the work of a
//! fresh build; and how a file's schema is read, checked and brought up to date on open.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use persist_core::schema::SchemaStatus;
use persist_core::{PersistError, Result};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{ConnectOptions, Connection};

use crate::direct;
use crate::error::{self, map_migrate, map_sqlx};
use crate::rows::{packed_id, packed_role};

/// Each file of `migrations/`: its version, its description (the words of its name) and its SQL.
const FILES: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "session bindings", include_str!("../migrations/0002_session_bindings.sql")),
    (3, "reserved index", include_str!("../migrations/0003_reserved_index.sql")),
    (4, "idempotency key index", include_str!("../migrations/0004_idempotency_key_index.sql")),
    (5, "messages in arrival order", include_str!("../migrations/0005_messages_in_arrival_order.sql")),
    (6, "tenant in identity", include_str!("../migrations/0006_tenant_in_identity.sql")),
    (7, "change feed", include_str!("../migrations/0007_change_feed.sql")),
    (8, "change feed pages", include_str!("../migrations/0008_change_feed_pages.sql")),
    (9, "values", include_str!("../migrations/0009_values.sql")),
    (10, "interrupted replies", include_str!("../migrations/0010_interrupted_replies.sql")),
    (11, "live replies", include_str!("../migrations/0011_live_replies.sql")),
    (12, "branches", include_str!("../migrations/0012_branches.sql")),
    (13, "summaries", include_str!("../migrations/0013_summaries.sql")),
    (14, "search", include_str!("../migrations/0014_search.sql")),
    // Named "compact" when they shipped (a store's record keeps the name); the storage form
    // they introduced is called packed everywhere else, compaction being the summaries'.
    (15, "compact rows", include_str!("../migrations/0015_compact_rows.sql")),
    (16, "compact feed", include_str!("../migrations/0016_compact_feed.sql")),
    (17, "compact messages", include_str!("../migrations/0017_compact_messages.sql")),
    (18, "messages view", include_str!("../migrations/0018_messages_view.sql")),
    (19, "embeddings", include_str!("../migrations/0019_embeddings.sql")),
    (20, "working memory", include_str!("../migrations/0020_working_memory.sql")),
    (21, "working memory feed", include_str!("../migrations/0021_working_memory_feed.sql")),
    (22, "spent keys", include_str!("../migrations/0022_spent_keys.sql")),
    (23, "embed feed", include_str!("../migrations/0023_embed_feed.sql")),
    (24, "search pending", include_str!("../migrations/0024_search_pending.sql")),
    (25, "records", include_str!("../migrations/0025_records.sql")),
];

/// The migrations, in version order.
pub(crate) static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| persist_sql_kit::migrator(FILES));

/// Every migration this build carries, with the checksum of its SQL.
pub(crate) fn known() -> impl Iterator<Item = (persist_core::schema::SchemaMigration, Vec<u8>)> {
    persist_sql_kit::known(&MIGRATOR)
}

/// The oldest schema a read-only handle reads as it is (a file one upgrade behind may still be
/// read, right after the upgrade of the crate, by `persist show` or `persist export`, when that
/// upgrade changed nothing reads use): version 16 gave the change feed its second table, which
/// every read of the feed reads; version 17 moved messages to `persist_messages`, which every
/// read of messages reads. Versions 18 to 20 added what no earlier read uses; version 21 gave
/// the feed's rows a resource (working memory's events), which every read of the feed reads: a
/// read-only handle on an older file refuses feed reads only. Version 22 (spent keys) is read by
/// writes only; version 23 named the op of an `embed`'s event in the feed's view, which an older
/// file, without such events, reads as it is. Version 24 added the table of messages waiting
/// for the search index, which a search reads when the file has it (an older file has none
/// waiting). Version 25 added the records' table, which only a read of records reads.
const OLDEST_READ_AS_IS: i64 = 17;

/// Refuses a file whose schema this crate cannot read as it is: a read-only handle cannot
/// migrate it.
pub(crate) async fn check_schema_version(readers: &SqlitePool, path: &Path) -> Result<()> {
    let latest = MIGRATOR.iter().map(|migration| migration.version).max().unwrap_or_default();
    let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(readers)
        .await
        .map_err(|e| error::in_file(path, map_sqlx("reading the schema version", e)))?;
    let applied = applied.unwrap_or_default();
    let why = match applied.cmp(&latest) {
        std::cmp::Ordering::Equal | std::cmp::Ordering::Less if applied >= OLDEST_READ_AS_IS => {
            let mut conn =
                readers.acquire().await.map_err(|e| error::in_file(path, map_sqlx("reading the schema", e)))?;
            return require_copied(&mut conn).await.map_err(|e| error::in_file(path, e));
        }
        std::cmp::Ordering::Equal | std::cmp::Ordering::Less => {
            "open it writable once to upgrade it (`persist migrate up` does)"
        }
        std::cmp::Ordering::Greater => "a newer version of persist wrote it",
    };
    Err(PersistError::Unsupported {
        what: format!(
            "reading {} (schema version {applied}) for reads only: this version reads version {latest}; {why}",
            path.display()
        )
        .into(),
    })
}

/// Opens the writer connection and brings the schema up to date.
///
/// Two processes opening a new file at the same moment both set it up: the one that loses the
/// race finds the file busy (switching it to WAL), a table another process just created, a
/// migration it just recorded, or a migration that fails because the schema it was written for
/// is gone: the other process applied that migration and newer ones meanwhile (the migrator
/// reads which migrations are applied before it takes the file's lock). That one starts over on
/// a fresh connection, where it finds what the other applied and goes on from there, for up to
/// `patience` (the busy timeout). Any other failure is answered at once.
pub(crate) async fn open_writer(options: &SqliteConnectOptions, patience: Duration) -> Result<sqlx::SqliteConnection> {
    let deadline = std::time::Instant::now() + patience.max(Duration::from_secs(1));
    let mut pause = Duration::from_millis(2);
    loop {
        let raced = match options.connect().await {
            Ok(mut writer) => {
                // `run_direct` is `run` without the `Acquire` indirection, whose higher-ranked
                // bound keeps this future from being `Send` (sqlx documents it as the way around).
                match MIGRATOR.run_direct(None, &mut writer, false).await {
                    Ok(()) => return Ok(writer),
                    Err(error) if error::raced_migration(&error) => map_migrate(error),
                    Err(error @ sqlx::migrate::MigrateError::ExecuteMigration(_, version))
                        if applied_elsewhere(&mut writer, version).await =>
                    {
                        map_migrate(error)
                    }
                    Err(error) => return Err(map_migrate(error)),
                }
            }
            Err(error) if error::raced(&error) => map_sqlx("opening the database", error),
            Err(error) => return Err(map_sqlx("opening the database", error)),
        };
        if std::time::Instant::now() + pause > deadline {
            return Err(raced);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Where the file at `path` stands against this build's migrations, read on a connection that
/// changes nothing; `None` when there is no file.
pub(crate) async fn read_status(path: &Path, busy_timeout: Duration) -> Result<Option<SchemaStatus>> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(PersistError::backend(format!("reading {}", path.display()), error)),
        Ok(_) => {}
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(direct::needs_immutable(path))
        .busy_timeout(busy_timeout);
    let mut conn = options.connect().await.map_err(|e| error::in_file(path, map_sqlx("opening the database", e)))?;
    let records = read_records(&mut conn).await.map_err(|e| error::in_file(path, e));
    let level = format_level(&mut conn).await.map_err(|e| error::in_file(path, e));
    let copying = copying(&mut conn).await.map_err(|e| error::in_file(path, e));
    let retired =
        has(&mut conn, "table", RETIRED).await.map_err(|e| error::in_file(path, map_sqlx("reading the schema", e)));
    let _ = conn.close().await;
    let level = level?;
    // A finish stopped while it emptied the old table of messages is not done yet: finishing
    // again (or an opening that migrates) goes on with it.
    let unfinished = level.is_some_and(|level| level < FORMAT) || retired?;
    let mut status = SchemaStatus::from_records(records?, known()).with_unfinished(unfinished);
    // Version 17 is applied once its copy of messages is complete (see `copy_messages`): until
    // then it is pending, so `migrate up` (or an opening that migrates) completes it, and an
    // instance that does not migrate refuses the store as it refuses one behind.
    if copying? && let Some((described, _)) = known().find(|(migration, _)| migration.version == COPIED_BY) {
        status = status.with_work_left(described);
    }
    Ok(Some(status))
}

/// The migration whose copy of messages must be complete before a build reads the store.
const COPIED_BY: i64 = 17;

/// Whether a copy of messages to `persist_messages` is under way (see [`copy_messages`]).
async fn copying(conn: &mut sqlx::SqliteConnection) -> Result<bool> {
    let exists = has(&mut *conn, "table", "persist_copy").await;
    if !exists.map_err(|e| map_sqlx("reading how far messages are copied", e))? {
        return Ok(false);
    }
    let (upto, done) = copy_progress(conn).await?;
    Ok(done < upto)
}

/// How far the copy of messages has come: the highest rowid to copy, the highest copied.
async fn copy_progress(conn: &mut sqlx::SqliteConnection) -> Result<(i64, i64)> {
    sqlx::query_as("SELECT upto, done FROM persist_copy")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading how far messages are copied", e))
}

/// The format level this build writes: 1, packed rows (`migrations/0015`); 2, the change
/// feed's events in `persist_events` (`migrations/0016`); 3, messages in `persist_messages`
/// alone (`migrations/0017`: `messages` and its mirrors gone, see `sql/finish_messages.sql`);
/// 4, the search index kept later (`migrations/0024`, `sql/defer_search.sql`: an instance of an
/// earlier build, which searches the index alone, would miss the messages waiting for it).
pub(crate) const FORMAT: i64 = 4;

/// The lowest format level at which contents are written in their packed form (1).
pub(crate) const COMPACT_CONTENTS: i64 = 1;

/// The store's format level (see [`FORMAT`]); `None` before schema version 15 (no
/// `persist_format`).
pub(crate) async fn format_level(conn: &mut sqlx::SqliteConnection) -> Result<Option<i64>> {
    let exists = has(&mut *conn, "table", "persist_format").await;
    if !exists.map_err(|e| map_sqlx("reading the store's format", e))? {
        return Ok(None);
    }
    // A store whose row is gone is written as the lowest level (`raise_format` puts it back).
    let level: Option<i64> = sqlx::query_scalar("SELECT level FROM persist_format")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the store's format", e))?;
    Ok(Some(level.unwrap_or(0)))
}

/// Whether the file at `path` holds no store yet (absent, empty, or never migrated): opening it
/// creates one, written in this build's format from the start.
pub(crate) async fn is_new(path: &Path, busy_timeout: Duration) -> bool {
    match read_status(path, busy_timeout).await {
        Ok(None) => true,
        Ok(Some(status)) => status.applied == 0 && status.failed.is_empty() && status.changed.is_empty(),
        Err(_) => false,
    }
}

/// Raises the store's format to this build's (`FORMAT`) and answers whether it was lower.
///
/// Format 2 names threads by their keys in the feed's events, format 3 hands messages over to
/// `persist_messages` alone, format 4 keeps the search index later: the threads made before
/// version 16 get their keys and the earlier messages are copied first (see
/// [`copy_messages`]), then one transaction moves the triggers of `messages` to it, drops the
/// mirrors between the two, renames `messages` (emptied in batches and dropped after) and
/// makes the search index's triggers record the rows they index later
/// (`sql/defer_search.sql`). A run stopped part-way goes on from where it stopped.
pub(crate) async fn raise_format(conn: &mut sqlx::SqliteConnection) -> Result<bool> {
    copy_messages(conn).await?;
    let context = "raising the store's format";
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_sqlx(context, e))?;
    // Handed over once: the mirrors go with it (a format row removed by hand afterwards is put
    // back, nothing else).
    let mirrored = has(&mut *tx, "trigger", "persist_mirror_inserted").await.map_err(|e| map_sqlx(context, e))?;
    if mirrored {
        sqlx::raw_sql(FINISH_MESSAGES).execute(&mut *tx).await.map_err(|e| map_sqlx(context, e))?;
    }
    // Format 4: the search index kept later, once its triggers are on `persist_messages`.
    let deferred: bool = sqlx::query_scalar("SELECT indexed IS NOT NULL FROM persist_search_state")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_sqlx(context, e))?;
    if !deferred {
        sqlx::raw_sql(DEFER_SEARCH).execute(&mut *tx).await.map_err(|e| map_sqlx(context, e))?;
    }
    let raised = sqlx::query(
        "INSERT INTO persist_format (id, level) VALUES (1, ?1) \
         ON CONFLICT (id) DO UPDATE SET level = excluded.level WHERE level < excluded.level",
    )
    .bind(FORMAT)
    .execute(&mut *tx)
    .await
    .map_err(|e| map_sqlx(context, e))?;
    tx.commit().await.map_err(|e| map_sqlx(context, e))?;
    drop_messages(conn).await?;
    Ok(raised.rows_affected() > 0)
}

/// The statements that hand messages over to `persist_messages` alone (format 3).
const FINISH_MESSAGES: &str = include_str!("../sql/finish_messages.sql");

/// The statements that keep the search index later (format 4).
const DEFER_SEARCH: &str = include_str!("../sql/defer_search.sql");

/// Rows (threads keyed, messages copied or removed) a transaction of [`raise_format`] and
/// [`copy_messages`] takes.
const BATCH: i64 = 1000;

/// Gives the threads made before version 16 their keys, in batches that each commit (`BATCH`
/// threads a transaction: the file's lock is held briefly, writers go on between them).
async fn key_threads(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let unkeyed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM threads WHERE key IS NULL)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("keying the threads", e))?;
    if !unkeyed {
        return Ok(());
    }
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_sqlx("keying the threads", e))?;
        let keyed = sqlx::query(
            "WITH batch(thread, n) AS MATERIALIZED ( \
                 SELECT rowid, row_number() OVER (ORDER BY rowid) FROM threads WHERE key IS NULL \
                  ORDER BY rowid LIMIT ?1) \
             UPDATE threads SET key = s.thread_keys + b.n \
               FROM batch b, persist_feed_state s WHERE threads.rowid = b.thread",
        )
        .bind(BATCH)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("keying the threads", e))?
        .rows_affected();
        sqlx::query(
            "UPDATE persist_feed_state SET thread_keys = max(thread_keys, (SELECT coalesce(max(key), 0) FROM threads))",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx("keying the threads", e))?;
        tx.commit().await.map_err(|e| map_sqlx("keying the threads", e))?;
        if keyed < BATCH as u64 {
            break;
        }
    }
    Ok(())
}

/// Copies the messages written before version 17 from `messages` to `persist_messages`, in
/// batches that each commit (`persist_copy` records how far; what was written since is kept
/// in step by the mirrors of `migrations/0017`), the threads made before version 16 keyed
/// first ([`key_threads`]). Nothing to do once complete. Run by the build
/// that migrated the store, before it serves: its reads and writes see `persist_messages` alone.
pub(crate) async fn copy_messages(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    key_threads(conn).await?;
    if require_copied(conn).await.is_ok() {
        return Ok(());
    }
    let context = "copying messages to persist_messages";
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_sqlx(context, e))?;
        let (upto, done): (i64, i64) = sqlx::query_as("SELECT upto, done FROM persist_copy")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_sqlx(context, e))?;
        if done >= upto {
            return tx.commit().await.map_err(|e| map_sqlx(context, e));
        }
        let through: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(rowid), ?2) FROM (SELECT rowid FROM messages WHERE rowid > ?1 AND rowid <= ?2 \
                                                    ORDER BY rowid LIMIT ?3)",
        )
        .bind(done)
        .bind(upto)
        .bind(BATCH)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_sqlx(context, e))?;
        // A message whose thread row is missing (written with foreign keys off) has no key to
        // be named by: refused, saying which, rather than left behind.
        let orphan: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT m.rowid, m.tenant, m.thread_id FROM messages m \
              WHERE m.rowid > ?1 AND m.rowid <= ?2 \
                AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id) \
              LIMIT 1",
        )
        .bind(done)
        .bind(through)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_sqlx(context, e))?;
        if let Some((rowid, tenant, thread)) = orphan {
            return Err(crate::error::corrupt(format!(
                "message rowid {rowid} of `messages` names the thread {thread:?} (tenant {tenant:?}), which has no \
                 row in `threads`: add the thread's row or remove its messages, then upgrade again"
            )));
        }
        sqlx::query(COPY_MESSAGES)
            .bind(done)
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx(context, e))?;
        sqlx::query("UPDATE persist_copy SET done = ?1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_sqlx(context, e))?;
        tx.commit().await.map_err(|e| map_sqlx(context, e))?;
    }
}

/// The rows of `messages` with rowids in `(?1, ?2]`, as `persist_messages` holds them (the same
/// mapping as the mirror `persist_mirror_inserted` of `migrations/0017`).
const COPY_MESSAGES: &str = concat!(
    "INSERT INTO persist_messages (row, thread, message_id, seq, role, content, content_form, metadata, status, \
                                  version, idempotency_key, created_at, updated_at, delta, delta_version, parent_seq) \
     SELECT m.rowid, t.key, ",
    packed_id!("m.message_id"),
    ", m.seq, ",
    packed_role!("m.role"),
    ", m.content, m.content_form, nullif(m.metadata, '{}'), nullif(m.status, 'complete'), m.version, \
            m.idempotency_key, m.created_at, nullif(m.updated_at, m.created_at), m.delta, m.delta_version, \
            m.parent_seq \
        FROM messages m JOIN threads t ON t.tenant = m.tenant AND t.thread_id = m.thread_id \
      WHERE m.rowid > ?1 AND m.rowid <= ?2 \
         ON CONFLICT DO NOTHING"
);

/// Refuses a store whose messages are not all copied to `persist_messages` yet (see
/// [`copy_messages`]): a store migrated to version 17 by a build stopped before it finished.
pub(crate) async fn require_copied(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let (upto, done) = copy_progress(conn).await?;
    if done >= upto {
        return Ok(());
    }
    Err(PersistError::Unsupported {
        what: format!(
            "the store's messages are being copied to their version 17 table ({done} of {upto} rows by rowid): \
             `persist migrate up` (or opening it with `migrate(true)`) completes the copy"
        )
        .into(),
    })
}

/// The table `messages` is renamed to at finish, until it is emptied and dropped.
pub(crate) const RETIRED: &str = "persist_messages_retired";

/// Whether the schema holds the object `name` of type `kind` (`table`, `trigger`).
pub(crate) async fn has<'e>(
    conn: impl sqlx::SqliteExecutor<'e>,
    kind: &'static str,
    name: &'static str,
) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2)")
        .bind(kind)
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Empties `persist_messages_retired` (`messages`, renamed as the store was finished: nothing
/// reads it, and a statement of version 16 finds no table) in batches that each commit, then
/// drops it. Nothing to do once it is gone; a finish stopped part-way goes on at the next
/// opening that migrates.
pub(crate) async fn drop_messages(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let context = "removing the table messages";
    if !has(&mut *conn, "table", RETIRED).await.map_err(|e| map_sqlx(context, e))? {
        return Ok(());
    }
    loop {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_sqlx(context, e))?;
        if !has(&mut *tx, "table", RETIRED).await.map_err(|e| map_sqlx(context, e))? {
            return tx.commit().await.map_err(|e| map_sqlx(context, e));
        }
        let removed = sqlx::query(
            "DELETE FROM persist_messages_retired WHERE rowid IN (SELECT rowid FROM persist_messages_retired LIMIT ?1)",
        )
        .bind(BATCH)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_sqlx(context, e))?
        .rows_affected();
        if removed == 0 {
            sqlx::query("DROP TABLE IF EXISTS persist_messages_retired")
                .execute(&mut *tx)
                .await
                .map_err(|e| map_sqlx(context, e))?;
        }
        tx.commit().await.map_err(|e| map_sqlx(context, e))?;
    }
}

/// The migrations the file records: version, whether it succeeded, checksum (none: a file
/// persist never set up).
async fn read_records(conn: &mut sqlx::SqliteConnection) -> Result<Vec<(i64, bool, Vec<u8>)>> {
    let migrated = has(&mut *conn, "table", "_sqlx_migrations").await;
    if !migrated.map_err(|e| map_sqlx("reading the schema version", e))? {
        return Ok(Vec::new());
    }
    sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the schema version", e))
}

/// Whether migration `version` is recorded as applied (by another process: this one's failed
/// and was rolled back).
async fn applied_elsewhere(conn: &mut sqlx::SqliteConnection, version: i64) -> bool {
    let applied = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = ?1 AND success)")
        .bind(version)
        .fetch_one(&mut *conn)
        .await;
    matches!(applied, Ok(true))
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
}
