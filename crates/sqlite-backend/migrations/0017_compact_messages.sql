-- persist schema, version 17: messages in compact rows. A second table, `persist_messages`,
-- holds every message: its thread named by the thread's key (`threads.key`, migration 16), not
-- by tenant and id (in the row and in both unique indexes); a message id that is a UUID in its
-- canonical text (36 lowercase characters) as its 16 bytes; the four common roles as numbers;
-- NULL for what most messages hold
-- (`metadata` '{}', `status` 'complete', `updated_at` equal to `created_at`). Its `row` is the
-- message's rowid in `messages` (the search index's rowid).
--
-- This version's build reads and writes `persist_messages` only. Until the store is finished
-- (instances of version 16 may still run it, reading and writing `messages`), triggers keep the
-- two tables in step both ways, and the triggers that number messages, write the feed's events,
-- splice branches and keep the search index stay on `messages`, as version 16 made them; the
-- messages written before this migration are copied by the build that applied it, in batches
-- that each commit (`persist_copy` says how far), before it serves. Finishing the store moves
-- those triggers to `persist_messages`, drops the mirrors, renames `messages` (a statement of
-- version 16 then fails: no such table) and empties and drops it.
--
-- The threads made before version 16 get their keys before the copy, in batches of their own;
-- one that version 16 writes a message to first gets its key then (`persist_mirror_inserted`).
-- Nothing here reads or writes an existing row but to find how far the copy goes.

CREATE TABLE persist_messages (
    row             INTEGER PRIMARY KEY,            -- `messages`' rowid; the search index's rowid
    thread          INTEGER NOT NULL REFERENCES threads (key),
    message_id      ANY     NOT NULL,               -- 16 bytes: a canonical UUID; else the id's text
    seq             INTEGER NOT NULL,               -- 1, 2, 3… per thread, never reused
    role            ANY     NOT NULL,               -- 0 user, 1 assistant, 2 system, 3 tool; else its name
    content         TEXT    NOT NULL,               -- JSON (`content_form` 1: a text block's text)
    content_form    INTEGER,
    metadata        TEXT,                           -- JSON object; NULL: '{}'
    status          TEXT    CHECK (status IN ('reserved', 'interrupted')),   -- NULL: complete
    version         INTEGER NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER,                        -- NULL: created_at
    delta           TEXT,
    delta_version   INTEGER,
    parent_seq      INTEGER
) STRICT;
CREATE UNIQUE INDEX persist_messages_by_id ON persist_messages (thread, message_id);
CREATE UNIQUE INDEX persist_messages_by_seq ON persist_messages (thread, seq);
CREATE UNIQUE INDEX persist_messages_by_idempotency_key ON persist_messages (thread, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX persist_messages_reserved_by_age ON persist_messages (created_at) WHERE status = 'reserved';
CREATE INDEX persist_messages_run_starts ON persist_messages (thread, seq, parent_seq) WHERE parent_seq IS NOT NULL;
CREATE INDEX persist_messages_run_starts_by_parent ON persist_messages (thread, parent_seq)
    WHERE parent_seq IS NOT NULL;

-- How far the copy of the messages written before this migration has come: rowids of
-- `messages` up to `done` are copied; it is complete when `done` reaches `upto`.
CREATE TABLE persist_copy (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL,
    done INTEGER NOT NULL
) STRICT;
INSERT INTO persist_copy (id, upto, done) VALUES (1, (SELECT coalesce(max(rowid), 0) FROM messages), 0);

-- `messages` → `persist_messages`: a write of version 16 (or of a trigger on `messages`). A row
-- this version wrote first (through the mirror below) is already there.
CREATE TRIGGER persist_mirror_inserted AFTER INSERT ON messages
BEGIN
    UPDATE persist_feed_state SET thread_keys = thread_keys + 1
     WHERE EXISTS (SELECT 1 FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND key IS NULL);
    UPDATE threads SET key = (SELECT thread_keys FROM persist_feed_state)
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND key IS NULL;
    INSERT INTO persist_messages (row, thread, message_id, seq, role, content, content_form, metadata, status,
                                  version, idempotency_key, created_at, updated_at, delta, delta_version, parent_seq)
    SELECT NEW.rowid, t.key,
           CASE WHEN length(NEW.message_id) = 36 AND NEW.message_id NOT GLOB '*[^0-9a-f-]*'
                     AND substr(NEW.message_id, 9, 1) || substr(NEW.message_id, 14, 1) || substr(NEW.message_id, 19, 1)
                         || substr(NEW.message_id, 24, 1) = '----'
                     AND length(unhex(NEW.message_id, '-')) = 16
                THEN unhex(NEW.message_id, '-') ELSE NEW.message_id END,
           NEW.seq,
           CASE NEW.role WHEN 'user' THEN 0 WHEN 'assistant' THEN 1
                WHEN 'system' THEN 2 WHEN 'tool' THEN 3 ELSE NEW.role END,
           NEW.content, NEW.content_form, nullif(NEW.metadata, '{}'), nullif(NEW.status, 'complete'),
           NEW.version, NEW.idempotency_key, NEW.created_at, nullif(NEW.updated_at, NEW.created_at), NEW.delta,
           NEW.delta_version, NEW.parent_seq
      FROM threads t WHERE t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id
        ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER persist_mirror_updated AFTER UPDATE ON messages
BEGIN
    UPDATE persist_messages
       SET seq = NEW.seq,
           role = CASE NEW.role WHEN 'user' THEN 0 WHEN 'assistant' THEN 1
                       WHEN 'system' THEN 2 WHEN 'tool' THEN 3 ELSE NEW.role END,
           content = NEW.content, content_form = NEW.content_form, metadata = nullif(NEW.metadata, '{}'),
           status = nullif(NEW.status, 'complete'), version = NEW.version,
           idempotency_key = NEW.idempotency_key, created_at = NEW.created_at,
           updated_at = nullif(NEW.updated_at, NEW.created_at), delta = NEW.delta, delta_version = NEW.delta_version,
           parent_seq = NEW.parent_seq
     WHERE row = NEW.rowid
       AND (seq IS NOT NEW.seq
            OR role IS NOT (CASE NEW.role WHEN 'user' THEN 0 WHEN 'assistant' THEN 1 WHEN 'system' THEN 2
                                          WHEN 'tool' THEN 3 ELSE NEW.role END)
            OR content IS NOT NEW.content OR content_form IS NOT NEW.content_form
            OR metadata IS NOT nullif(NEW.metadata, '{}')
            OR status IS NOT nullif(NEW.status, 'complete') OR version IS NOT NEW.version
            OR idempotency_key IS NOT NEW.idempotency_key OR created_at IS NOT NEW.created_at
            OR updated_at IS NOT nullif(NEW.updated_at, NEW.created_at) OR delta IS NOT NEW.delta
            OR delta_version IS NOT NEW.delta_version OR parent_seq IS NOT NEW.parent_seq);
END;

CREATE TRIGGER persist_mirror_deleted AFTER DELETE ON messages
BEGIN
    DELETE FROM persist_messages WHERE row = OLD.rowid;
END;

-- `persist_messages` → `messages`: a write of this version, in the form version 16 reads; the
-- triggers of `messages` then number it, write its event and index it. A row copied from
-- `messages` is already there.
CREATE TRIGGER persist_messages_mirrored_inserted AFTER INSERT ON persist_messages
BEGIN
    INSERT INTO messages (rowid, tenant, thread_id, message_id, seq, role, content, content_form, metadata, status,
                          version, idempotency_key, created_at, updated_at, delta, delta_version, parent_seq)
    SELECT NEW.row, t.tenant, t.thread_id,
           CASE WHEN typeof(NEW.message_id) = 'blob'
                THEN lower(substr(hex(NEW.message_id), 1, 8) || '-' || substr(hex(NEW.message_id), 9, 4) || '-'
                           || substr(hex(NEW.message_id), 13, 4) || '-' || substr(hex(NEW.message_id), 17, 4) || '-'
                           || substr(hex(NEW.message_id), 21, 12))
                ELSE NEW.message_id END,
           NEW.seq,
           CASE NEW.role WHEN 0 THEN 'user' WHEN 1 THEN 'assistant'
                WHEN 2 THEN 'system' WHEN 3 THEN 'tool' ELSE NEW.role END,
           NEW.content, NEW.content_form, coalesce(NEW.metadata, '{}'),
           coalesce(NEW.status, 'complete'), NEW.version, NEW.idempotency_key, NEW.created_at,
           coalesce(NEW.updated_at, NEW.created_at), NEW.delta, NEW.delta_version, NEW.parent_seq
      FROM threads t WHERE t.key = NEW.thread
        ON CONFLICT DO NOTHING;
END;

-- A change of the parent alone is not a change version 16's triggers on `messages` see (no event).
CREATE TRIGGER persist_messages_mirrored_updated
AFTER UPDATE OF seq, role, content, content_form, metadata, status, version, idempotency_key, created_at, updated_at,
                delta, delta_version ON persist_messages
BEGIN
    UPDATE messages
       SET seq = NEW.seq,
           role = CASE NEW.role WHEN 0 THEN 'user' WHEN 1 THEN 'assistant'
                       WHEN 2 THEN 'system' WHEN 3 THEN 'tool' ELSE NEW.role END,
           content = NEW.content, content_form = NEW.content_form, metadata = coalesce(NEW.metadata, '{}'),
           status = coalesce(NEW.status, 'complete'), version = NEW.version,
           idempotency_key = NEW.idempotency_key, created_at = NEW.created_at,
           updated_at = coalesce(NEW.updated_at, NEW.created_at), delta = NEW.delta,
           delta_version = NEW.delta_version,
           parent_seq = NEW.parent_seq
     WHERE rowid = NEW.row
       AND (seq IS NOT NEW.seq
            OR role IS NOT (CASE NEW.role WHEN 0 THEN 'user' WHEN 1 THEN 'assistant' WHEN 2 THEN 'system'
                                          WHEN 3 THEN 'tool' ELSE NEW.role END)
            OR content IS NOT NEW.content OR content_form IS NOT NEW.content_form
            OR metadata IS NOT coalesce(NEW.metadata, '{}')
            OR status IS NOT coalesce(NEW.status, 'complete') OR version IS NOT NEW.version
            OR idempotency_key IS NOT NEW.idempotency_key OR created_at IS NOT NEW.created_at
            OR updated_at IS NOT coalesce(NEW.updated_at, NEW.created_at) OR delta IS NOT NEW.delta
            OR delta_version IS NOT NEW.delta_version OR parent_seq IS NOT NEW.parent_seq);
END;

CREATE TRIGGER persist_messages_mirrored_parent AFTER UPDATE OF parent_seq ON persist_messages
BEGIN
    UPDATE messages SET parent_seq = NEW.parent_seq WHERE rowid = NEW.row AND parent_seq IS NOT NEW.parent_seq;
END;

CREATE TRIGGER persist_messages_mirrored_deleted AFTER DELETE ON persist_messages
BEGIN
    DELETE FROM messages WHERE rowid = OLD.row;
END;
