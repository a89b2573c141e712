//! The baselines the SQLite group measures ours against: the same transaction by hand (sqlx and
//! rusqlite on a held connection) and rusqlite's rates for the same rows in batches.

use std::path::Path;
use std::time::{Duration, Instant};

use persist::{Content, Timestamp};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection};

use super::migrated;
use crate::measure::rate;
use crate::workload::TEXT;

/// The benchmark's text as the backend stores one text block: its JSON string (`content_form` 1).
fn stored_text() -> String {
    Content::text(TEXT).text_block_json().expect("one text block").to_owned()
}

/// The same transaction our writer runs for one add, on a held connection.
pub(super) struct HandWritten {
    conn: SqliteConnection,
}

impl HandWritten {
    pub(super) async fn open(path: &Path) -> Self {
        migrated(path).await;
        let conn = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .connect()
            .await
            .expect("connect");
        Self { conn }
    }

    pub(super) async fn add(&mut self, thread: &str, id: &str) {
        let content = stored_text();
        let now = Timestamp::now().as_micros();
        // The transaction our writer sends for one add: one query, as it does.
        sqlx::query(
            "BEGIN IMMEDIATE; INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant, thread_id) DO NOTHING; \
             INSERT INTO persist_messages (thread, message_id, seq, role, content, content_form, metadata, status, \
                                           version, idempotency_key, created_at) \
             SELECT t.key, ?, t.last_seq + 1, ?, ?, 1, ?, ?, 1, ?, ? \
               FROM threads t WHERE t.tenant = ? AND t.thread_id = ? AND t.deleted_at IS NULL \
             ON CONFLICT DO NOTHING RETURNING ? AS plan, message_id, seq, role, content, metadata, \
                       status, version, idempotency_key, created_at, updated_at; COMMIT;",
        )
        .bind("")
        .bind(thread)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(0_i64)
        .bind(&content)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(now)
        .bind("")
        .bind(thread)
        .bind(0_i64)
        .fetch_all(&mut self.conn)
        .await
        .expect("add");
    }
}

/// The same transaction by hand with rusqlite on a held connection: our insert's two
/// statements (prepared once) in `BEGIN IMMEDIATE` … `COMMIT`, the seq read back, with our
/// writer's settings: no automatic checkpoint on commit, the log copied back by a second
/// connection on its own thread every 256 commits. What one caller could reach with nothing
/// around SQLite.
pub(crate) struct HeldRusqlite {
    conn: rusqlite::Connection,
    since_checkpoint: usize,
    wake: std::sync::mpsc::SyncSender<()>,
}

impl HeldRusqlite {
    pub(super) fn open(path: &Path) -> Self {
        Self::open_with(path, "NORMAL")
    }

    /// The same on a connection at `synchronous` (`NORMAL` as our default, or `FULL`).
    pub(crate) fn open_with(path: &Path, synchronous: &str) -> Self {
        let conn = rusqlite_connection(path);
        conn.pragma_update(None, "synchronous", synchronous).unwrap();
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384; PRAGMA secure_delete = ON;")
            .unwrap();
        let checkpointer = rusqlite_connection(path);
        checkpointer.pragma_update(None, "synchronous", synchronous).unwrap();
        let (wake, wakes) = std::sync::mpsc::sync_channel::<()>(1);
        // Ends with the connection (its channel's sender).
        std::thread::spawn(move || {
            while wakes.recv().is_ok() {
                let _ = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        });
        Self { conn, since_checkpoint: 0, wake }
    }

    pub(crate) fn add(&mut self, thread: &str, id: &str) {
        use persist::sqlite::group_sql::{INSERT_MESSAGE, INSERT_THREAD};
        let content = stored_text();
        let now = Timestamp::now().as_micros();
        let conn = &self.conn;
        conn.prepare_cached("BEGIN IMMEDIATE").unwrap().execute(()).unwrap();
        let form = Some(1_i64);
        let params =
            rusqlite::params![thread, "", id, "user", content, "{}", "complete", None::<&str>, now, None::<&str>, form];
        // The thread's statement takes the first ten.
        conn.prepare_cached(INSERT_THREAD).unwrap().execute(&params[..10]).unwrap();
        let _seq: i64 = conn.prepare_cached(INSERT_MESSAGE).unwrap().query_row(params, |row| row.get(0)).unwrap();
        conn.prepare_cached("COMMIT").unwrap().execute(()).unwrap();
        self.since_checkpoint += 1;
        if self.since_checkpoint >= 256 {
            self.since_checkpoint = 0;
            let _ = self.wake.try_send(());
        }
    }
}

/// A rusqlite connection to a migrated database, with the pragmas our writer uses.
pub(super) fn rusqlite_connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("rusqlite open");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn
}

/// The same rows inserted with rusqlite, `per_transaction` rows a transaction (row `i` for
/// thread `i % threads`): with 1000, the engine's batched rate; with 64 on 64 threads, a full
/// group of 64 callers committed with nothing around it, the most any group commit could do.
pub(super) fn rusqlite_rate(
    conn: &mut rusqlite::Connection,
    n: usize,
    threads: usize,
    per_transaction: usize,
    round: usize,
) -> f64 {
    let content = stored_text();
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(per_transaction) {
        let tx = conn.transaction().unwrap();
        {
            let mut thread = tx
                .prepare_cached(
                    "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', ?1, ?2, ?2) \
                     ON CONFLICT (tenant, thread_id) DO NOTHING",
                )
                .unwrap();
            let mut message = tx
                .prepare_cached(
                    "INSERT INTO persist_messages (thread, message_id, seq, role, content, content_form, version, \
                                                   created_at) \
                     SELECT t.key, ?2, t.last_seq + 1, 0, ?3, 1, 1, ?4 \
                       FROM threads t WHERE t.tenant = '' AND t.thread_id = ?1 AND t.deleted_at IS NULL \
                     ON CONFLICT DO NOTHING RETURNING seq",
                )
                .unwrap();
            for &i in chunk {
                let now = Timestamp::now().as_micros();
                let thread_id = format!("r-{}", i % threads);
                thread.execute(rusqlite::params![thread_id, now]).unwrap();
                let _seq: i64 = message
                    .query_row(rusqlite::params![thread_id, format!("{round}-{i}"), content, now], |row| row.get(0))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    rate(n, start.elapsed())
}

/// The same rows as [`rusqlite_rate`] in groups of `threads` rows (one per thread) through our
/// own group statement, run with rusqlite and nothing around it: the writer connection's inbox
/// (`INBOX`), one `INSERT` of a JSON array a group in autocommit, its report read back, and the
/// log copied back by a second connection on its own thread every 256 rows, as our writer asks.
/// What our 64 callers could reach without the hand-offs between callers, the writer task and
/// sqlx's connection thread.
pub(super) fn rusqlite_group_rate(path: &Path, n: usize, threads: usize, round: usize) -> f64 {
    use persist::sqlite::group_sql::{INBOX, INBOX_INSERT, READ_REPORT};
    let conn = rusqlite_connection(path);
    conn.execute_batch(INBOX).unwrap();
    let checkpointer = rusqlite_connection(path);
    let (wake, wakes) = std::sync::mpsc::sync_channel::<()>(1);
    let copier = std::thread::spawn(move || {
        while wakes.recv().is_ok() {
            // Skipped, as ours would be, if SQLite's own checkpoint is running.
            let _ = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    });
    let content = stored_text();
    let start = Instant::now();
    let mut since_checkpoint = 0;
    for first in (0..n).step_by(threads) {
        let chunk = first..(first + threads).min(n);
        let now = Timestamp::now().as_micros();
        let rows: Vec<_> = chunk
            .clone()
            .enumerate()
            .map(|(plan, i)| {
                serde_json::json!([
                    plan,
                    format!("g-{}", i % threads),
                    "",
                    format!("{round}-{i}"),
                    "user",
                    content,
                    "{}",
                    "complete",
                    null,
                    now,
                    null,
                    1
                ])
            })
            .collect();
        conn.prepare_cached("DELETE FROM persist_written").unwrap().execute([]).unwrap();
        conn.prepare_cached(INBOX_INSERT).unwrap().execute([serde_json::to_string(&rows).unwrap()]).unwrap();
        let written: Option<String> =
            conn.prepare_cached(READ_REPORT).unwrap().query_row([], |row| row.get(0)).unwrap();
        assert_eq!(written.map(|w| w.split(',').count()), Some(chunk.len()), "every row written");
        since_checkpoint += chunk.len();
        if since_checkpoint >= 256 {
            since_checkpoint = 0;
            let _ = wake.try_send(());
        }
    }
    let elapsed = start.elapsed();
    drop(wake);
    copier.join().unwrap();
    rate(n, elapsed)
}
