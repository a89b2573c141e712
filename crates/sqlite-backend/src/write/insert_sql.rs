//! The SQL of inserts: one insert's statements (bound directly for a group of one, or run by
//! the writer connection's inbox trigger for a group), the inbox itself and its report.

use crate::rows::{packed_id, packed_role};

/// One insert: the thread `(tenant, thread_id)` is created if absent (not for a message that
/// names its parent: that thread must hold it), then the message is inserted unless the thread
/// is deleted, its id or idempotency key is taken (or spent: see `persist::spent`), or the
/// parent it names is not in the thread.
/// Its parent: the thread's active leaf (`$parent` NULL), none (`''`, a root), or the message
/// of id `$parent`, stored in its packed form
/// ([`stored_parent`](persist_core::branch::stored_parent): NULL for `seq - 1` or a root at 1,
/// 0 for another root). Written once, used twice: with the `NEW.…` columns in the inbox's trigger,
/// and with parameters for a group of one (which then reports its seq and parent with
/// `RETURNING`, `$returning`).
macro_rules! insert_one {
    ($thread:literal, $tenant:literal, $id:literal, $role:literal, $content:literal, $metadata:literal,
     $status:literal, $key:literal, $now:literal, $parent:literal, $form:literal, $guard:expr, $returning:literal) => {
        concat!(
            insert_thread!($thread, $tenant, $now, $parent, $guard),
            "; ",
            insert_message!(
                $thread, $tenant, $id, $role, $content, $metadata, $status, $key, $now, $parent, $form, $guard,
                $returning
            ),
            ";"
        )
    };
}

/// The first statement of [`insert_one!`]: the thread, created if absent (unless the message
/// names its parent).
macro_rules! insert_thread {
    ($thread:literal, $tenant:literal, $now:literal, $parent:literal, $guard:expr) => {
        concat!(
            "INSERT INTO threads (tenant, thread_id, created_at, updated_at) SELECT ",
            $tenant,
            ", ",
            $thread,
            ", ",
            $now,
            ", ",
            $now,
            " WHERE (",
            $parent,
            " IS NULL OR ",
            $parent,
            " = '')",
            $guard,
            " ON CONFLICT (tenant, thread_id) DO NOTHING"
        )
    };
}

/// The second statement of [`insert_one!`]: the message, numbered after the thread's last;
/// `$guard` adds a condition (`""` for none: see [`vector_guard!`]).
macro_rules! insert_message {
    ($thread:literal, $tenant:literal, $id:literal, $role:literal, $content:literal, $metadata:literal,
     $status:literal, $key:literal, $now:literal, $parent:literal, $form:literal, $guard:expr, $returning:literal) => {
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
            " AND t.deleted_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.thread = t.key AND s.idempotency_key = ",
            $key,
            " AND s.forget_at > ",
            $now,
            ") AND (",
            $parent,
            " IS NULL OR ",
            $parent,
            " = '' OR p.seq IS NOT NULL)",
            $guard,
            " ON CONFLICT DO NOTHING",
            $returning
        )
    };
}

/// A group of one insert: the statements of the inbox's trigger, bound directly (no JSON, no
/// trigger, no report table), the seq returned by the insert.
pub(super) const INSERT_ONE: &str = concat!(
    "BEGIN IMMEDIATE; ",
    insert_one!("?1", "?2", "?3", "?4", "?5", "?6", "?7", "?8", "?9", "?10", "?11", "", " RETURNING seq, parent_seq"),
    " COMMIT;"
);

/// The condition an insert that writes an embedding adds to its message's insert: model
/// `$model`'s dimensions in tenant `$tenant` are `$dims`, or not fixed yet (see
/// `persist::vector`). A message refused by it is diagnosed as the store's refusal of the vector.
macro_rules! vector_guard {
    ($tenant:literal, $model:literal, $dims:literal) => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM persist_embedding_models WHERE tenant = ",
            $tenant,
            " AND model = ",
            $model,
            " AND dims <> ",
            $dims,
            ")"
        )
    };
}

/// The statements that store the embedding of the message the statement before inserted (they
/// write nothing when it inserted none): the vector `$vector` of model `$model` (`$dims`
/// numbers) beside the thread's last message, then the model's dimensions in the tenant, if
/// they were not fixed yet.
macro_rules! insert_vector {
    ($thread:literal, $tenant:literal, $model:literal, $dims:literal, $vector:expr) => {
        concat!(
            insert_vector_row!($thread, $tenant, $model, $vector),
            "; ",
            insert_vector_model!($tenant, $model, $dims),
            ";"
        )
    };
}

/// The first statement of [`insert_vector!`].
macro_rules! insert_vector_row {
    ($thread:literal, $tenant:literal, $model:literal, $vector:expr) => {
        insert_vector_row!($thread, $tenant, $model, $vector, "changes() > 0")
    };
    ($thread:literal, $tenant:literal, $model:literal, $vector:expr, $written:literal) => {
        concat!(
            "INSERT INTO persist_embeddings (row, model, thread, seq, vector) SELECT m.row, ",
            $model,
            ", m.thread, m.seq, ",
            $vector,
            " FROM threads t JOIN persist_messages m ON m.thread = t.key AND m.seq = t.last_seq \
              WHERE ",
            $written,
            " AND ",
            $model,
            " IS NOT NULL AND t.tenant = ",
            $tenant,
            " AND t.thread_id = ",
            $thread
        )
    };
}

/// The second statement of [`insert_vector!`].
macro_rules! insert_vector_model {
    ($tenant:literal, $model:literal, $dims:literal) => {
        concat!(
            "INSERT INTO persist_embedding_models (tenant, model, dims) SELECT ",
            $tenant,
            ", ",
            $model,
            ", ",
            $dims,
            " WHERE changes() > 0 ON CONFLICT DO NOTHING"
        )
    };
}

/// [`INSERT_ONE`] of an insert that writes an embedding: model `?12`, its dimensions `?13`, the
/// vector's bytes `?14` (see `persist::vector::to_bytes`), stored in the message's transaction.
pub(super) const INSERT_ONE_VECTOR: &str = concat!(
    "BEGIN IMMEDIATE; ",
    insert_one!(
        "?1",
        "?2",
        "?3",
        "?4",
        "?5",
        "?6",
        "?7",
        "?8",
        "?9",
        "?10",
        "?11",
        vector_guard!("?2", "?12", "?13"),
        " RETURNING seq, parent_seq"
    ),
    " ",
    insert_vector!("?1", "?2", "?12", "?13", "?14"),
    " COMMIT;"
);

/// [`INSERT_MESSAGE`] guarded as [`INSERT_ONE_VECTOR`]'s, for the caller's lane; then
/// [`INSERT_VECTOR_ROW`] and [`INSERT_VECTOR_MODEL`], one statement at a time.
pub(super) const INSERT_MESSAGE_VECTOR: &str = insert_message!(
    "?1",
    "?2",
    "?3",
    "?4",
    "?5",
    "?6",
    "?7",
    "?8",
    "?9",
    "?10",
    "?11",
    vector_guard!("?2", "?12", "?13"),
    " RETURNING seq, parent_seq"
);

/// [`INSERT_THREAD`] guarded as [`INSERT_ONE_VECTOR`]'s (a refused vector makes no thread):
/// parameters 1 to 13.
pub(super) const INSERT_THREAD_VECTOR: &str =
    insert_thread!("?1", "?2", "?9", "?10", vector_guard!("?2", "?12", "?13"));

/// See [`INSERT_MESSAGE_VECTOR`]: parameters 1 to 14, as [`INSERT_ONE_VECTOR`]'s; run once the
/// message was inserted (its `RETURNING` row read).
pub(super) const INSERT_VECTOR_ROW: &str = insert_vector_row!("?1", "?2", "?12", "?14", "1");

/// See [`INSERT_MESSAGE_VECTOR`]: parameters 1 to 13, as [`INSERT_ONE_VECTOR`]'s.
pub(super) const INSERT_VECTOR_MODEL: &str = insert_vector_model!("?2", "?12", "?13");

/// The two statements of a group of one insert (`INSERT_ONE`) apart, for a connection that runs
/// one statement at a time (the caller's lane): the thread, then the message, which returns its
/// seq and parent. The same parameters.
pub const INSERT_THREAD: &str = insert_thread!("?1", "?2", "?9", "?10", "");

/// See [`INSERT_THREAD`].
pub const INSERT_MESSAGE: &str = insert_message!(
    "?1",
    "?2",
    "?3",
    "?4",
    "?5",
    "?6",
    "?7",
    "?8",
    "?9",
    "?10",
    "?11",
    "",
    " RETURNING seq, parent_seq"
);

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

/// [`inbox_insert!`] into the inbox of rows that write embeddings (`persist_inbox_vectors`):
/// each row's model, dimensions and vector (hex) beside its message's fields (`null`s for a row
/// without one).
macro_rules! inbox_vectors_insert {
    () => {
        "INSERT INTO persist_inbox_vectors (plan, thread_id, tenant, message_id, role, content, metadata, status, \
                                            idempotency_key, now, parent, content_form, model, dims, vector) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, \
                value ->> 14 \
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

/// [`APPLY_INBOX`] of a group where some rows write embeddings, through
/// `persist_inbox_vectors`.
pub(super) const APPLY_INBOX_VECTORS: &str =
    concat!("DELETE FROM persist_written; ", inbox_vectors_insert!(), " ", read_report!());

/// The insert alone of [`APPLY_INBOX_VECTORS`], for the caller's lane.
pub(super) const INBOX_VECTORS_INSERT: &str = inbox_vectors_insert!();

/// How many statements of [`APPLY_INBOX`] have finished once its insert has: the `DELETE`, then
/// the insert.
pub(super) const INSERT_FINISHED: usize = 2;

/// The insert alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const INBOX_INSERT: &str = inbox_insert!();

/// The report alone of the group statement (`APPLY_INBOX`), for the benchmark.
pub const READ_REPORT: &str = read_report!();

/// The statement of the inbox's triggers that reports a row written (`changes()`: by the
/// message's insert just before).
macro_rules! written {
    () => {
        " INSERT INTO persist_written (plan, seq, parent) \
             SELECT NEW.plan, m.seq, m.parent_seq FROM threads t \
               JOIN persist_messages m ON m.thread = t.key AND m.seq = t.last_seq \
              WHERE t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id AND changes() > 0;"
    };
}

/// The writer connection's inbox, created on that connection only (`TEMP`): inserting a row
/// into the `persist_inbox` view creates the thread `(tenant, thread_id)` if it is absent, then
/// inserts the message unless the thread is deleted, its id or idempotency key is taken or the
/// parent it names is not in the thread, and records in `persist_written` which row wrote a
/// message with which `seq` and parent. Its twin `persist_inbox_vectors` does the same for rows
/// that may carry an embedding, and stores each with its message. Rows
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
        "",
        ""
    ),
    written!(),
    " END; \
    CREATE TEMP VIEW IF NOT EXISTS persist_inbox_vectors AS \
        SELECT NULL AS plan, NULL AS thread_id, NULL AS tenant, NULL AS message_id, NULL AS role, NULL AS content, \
               NULL AS metadata, NULL AS status, NULL AS idempotency_key, NULL AS now, NULL AS parent, \
               NULL AS content_form, NULL AS model, NULL AS dims, NULL AS vector; \
    CREATE TEMP TRIGGER IF NOT EXISTS persist_inbox_vectors_insert INSTEAD OF INSERT ON persist_inbox_vectors \
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
        " AND (NEW.model IS NULL OR NOT EXISTS (SELECT 1 FROM persist_embedding_models \
                                                 WHERE tenant = NEW.tenant AND model = NEW.model \
                                                   AND dims <> NEW.dims))",
        ""
    ),
    written!(),
    // `changes()`: the report's row, written when the message was; none for a row without a
    // vector.
    " ",
    insert_vector!("NEW.thread_id", "NEW.tenant", "NEW.model", "NEW.dims", "unhex(NEW.vector)"),
    " END;"
);
