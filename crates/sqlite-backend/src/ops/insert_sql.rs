//! The SQL of inserts: one insert's statements (bound directly for a group of one, or run by
//! the writer connection's inbox trigger for a group), the inbox itself and its report.

use crate::rows::{packed_id, packed_role};

/// One insert: the thread `(tenant, thread_id)` is created if absent (not for a message that
/// names its parent: that thread must hold it), then the message is inserted unless the thread
/// is deleted, its id or idempotency key is taken, or the parent it names is not in the thread.
/// Its parent: the thread's active leaf (`$parent` NULL), none (`''`, a root), or the message
/// of id `$parent`, stored in its compact form
/// ([`stored_parent`](persist_core::branch::stored_parent): NULL for `seq - 1` or a root at 1,
/// 0 for another root). Written once, used twice: with the `NEW.…` columns in the inbox's trigger,
/// and with parameters for a group of one (which then reports its seq and parent with
/// `RETURNING`, `$returning`).
macro_rules! insert_one {
    ($thread:literal, $tenant:literal, $id:literal, $role:literal, $content:literal, $metadata:literal,
     $status:literal, $key:literal, $now:literal, $parent:literal, $form:literal, $returning:literal) => {
        concat!(
            insert_thread!($thread, $tenant, $now, $parent),
            "; ",
            insert_message!(
                $thread, $tenant, $id, $role, $content, $metadata, $status, $key, $now, $parent, $form, $returning
            ),
            ";"
        )
    };
}

/// The first statement of [`insert_one!`]: the thread, created if absent (unless the message
/// names its parent).
macro_rules! insert_thread {
    ($thread:literal, $tenant:literal, $now:literal, $parent:literal) => {
        concat!(
            "INSERT INTO threads (tenant, thread_id, created_at, updated_at) SELECT ",
            $tenant,
            ", ",
            $thread,
            ", ",
            $now,
            ", ",
            $now,
            " WHERE ",
            $parent,
            " IS NULL OR ",
            $parent,
            " = '' ON CONFLICT (tenant, thread_id) DO NOTHING"
        )
    };
}

/// The second statement of [`insert_one!`]: the message, numbered after the thread's last.
macro_rules! insert_message {
    ($thread:literal, $tenant:literal, $id:literal, $role:literal, $content:literal, $metadata:literal,
     $status:literal, $key:literal, $now:literal, $parent:literal, $form:literal, $returning:literal) => {
        concat!(
            "INSERT INTO persist_messages (thread, message_id, seq, role, content, content_form, metadata, status, \
                                           version, idempotency_key, created_at, parent_seq) \
             SELECT t.key, ",
            packed_id!($id),
            ", t.last_seq + 1, ",
            packed_role!($role),
            ", ",
            $content,
            ", ",
            $form,
            ", nullif(",
            $metadata,
            ", '{}'), nullif(",
            $status,
            ", 'complete'), 1, ",
            $key,
            ", ",
            $now,
            ", CASE WHEN ",
            $parent,
            " IS NULL THEN CASE WHEN t.active_leaf = t.last_seq THEN NULL \
                                ELSE coalesce(t.active_leaf, CASE WHEN t.last_seq > 0 THEN 0 END) END \
                    WHEN ",
            $parent,
            " = '' THEN CASE WHEN t.last_seq > 0 THEN 0 END \
                    ELSE nullif(p.seq, t.last_seq) END \
               FROM threads t LEFT JOIN persist_messages p ON p.thread = t.key AND p.message_id = ",
            packed_id!($parent),
            " WHERE t.tenant = ",
            $tenant,
            " AND t.thread_id = ",
            $thread,
            " AND t.deleted_at IS NULL AND (",
            $parent,
            " IS NULL OR ",
            $parent,
            " = '' OR p.seq IS NOT NULL) ON CONFLICT DO NOTHING",
            $returning
        )
    };
}

/// A group of one insert: the statements of the inbox's trigger, bound directly (no JSON, no
/// trigger, no report table), the seq returned by the insert.
pub(super) const INSERT_ONE: &str = concat!(
    "BEGIN IMMEDIATE; ",
    insert_one!("?1", "?2", "?3", "?4", "?5", "?6", "?7", "?8", "?9", "?10", "?11", " RETURNING seq, parent_seq"),
    " COMMIT;"
);

/// The two statements of a group of one insert (`INSERT_ONE`) apart, for a connection that runs
/// one statement at a time (the caller's lane): the thread, then the message, which returns its
/// seq and parent. The same parameters.
pub const INSERT_THREAD: &str = insert_thread!("?1", "?2", "?9", "?10");

/// See [`INSERT_THREAD`].
pub const INSERT_MESSAGE: &str =
    insert_message!("?1", "?2", "?3", "?4", "?5", "?6", "?7", "?8", "?9", "?10", "?11", " RETURNING seq, parent_seq");

/// The insert of [`APPLY_INBOX`]: the rows of its one JSON array parameter, in order.
macro_rules! inbox_insert {
    () => {
        "INSERT INTO persist_inbox (plan, thread_id, tenant, message_id, role, content, metadata, status, \
                                    idempotency_key, now, parent, content_form) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11 \
           FROM json_each(?) ORDER BY key;"
    };
}

/// The report of [`APPLY_INBOX`]: `plan:seq:parent` for every row its insert wrote (`parent`
/// empty for a root).
macro_rules! read_report {
    () => {
        "SELECT group_concat(plan || ':' || seq || ':' || coalesce(parent, ''), ',') AS written FROM persist_written;"
    };
}

/// Empties the report, applies the rows bound as one JSON array (`[[plan, thread_id, tenant,
/// message_id, role, content, metadata, status, idempotency_key, now, parent, content_form], …]`)
/// through the inbox, and reads the report back: three statements, one round trip. In autocommit the insert is
/// its own transaction, committed before the report is read: which statement finished tells a
/// failed insert from a committed one whose report could not be read.
pub(super) const APPLY_INBOX: &str = concat!("DELETE FROM persist_written; ", inbox_insert!(), " ", read_report!());

/// How many statements of [`APPLY_INBOX`] have finished once its insert has: the `DELETE`, then
/// the insert.
pub(super) const INSERT_FINISHED: usize = 2;

/// The insert alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const INBOX_INSERT: &str = inbox_insert!();

/// The report alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const READ_REPORT: &str = read_report!();

/// The writer connection's inbox, created on that connection only (`TEMP`): inserting a row
/// into the `persist_inbox` view creates the thread `(tenant, thread_id)` if it is absent, then
/// inserts the message unless the thread is deleted, its id or idempotency key is taken or the
/// parent it names is not in the thread, and records in `persist_written` which row wrote a
/// message with which `seq` and parent. Rows
/// are applied one at a time, in order, each seeing the rows before it (the thread's
/// `last_seq`, a key an earlier row took).
pub const INBOX: &str = concat!(
    "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384; \
    PRAGMA secure_delete = ON; \
    CREATE TEMP TABLE IF NOT EXISTS persist_written (plan INTEGER NOT NULL, seq INTEGER NOT NULL, parent INTEGER); \
    CREATE TEMP VIEW IF NOT EXISTS persist_inbox AS \
        SELECT NULL AS plan, NULL AS thread_id, NULL AS tenant, NULL AS message_id, NULL AS role, NULL AS content, \
               NULL AS metadata, NULL AS status, NULL AS idempotency_key, NULL AS now, NULL AS parent, \
               NULL AS content_form; \
    CREATE TEMP TRIGGER IF NOT EXISTS persist_inbox_insert INSTEAD OF INSERT ON persist_inbox \
    BEGIN ",
    insert_one!(
        "NEW.thread_id",
        "NEW.tenant",
        "NEW.message_id",
        "NEW.role",
        "NEW.content",
        "NEW.metadata",
        "NEW.status",
        "NEW.idempotency_key",
        "NEW.now",
        "NEW.parent",
        "NEW.content_form",
        ""
    ),
    " INSERT INTO persist_written (plan, seq, parent) \
             SELECT NEW.plan, m.seq, m.parent_seq FROM threads t \
               JOIN persist_messages m ON m.thread = t.key AND m.seq = t.last_seq \
              WHERE t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id AND changes() > 0; \
    END;"
);
