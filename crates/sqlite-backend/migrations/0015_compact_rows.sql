-- persist schema, version 15: compact rows. Two encodings that take fewer bytes a message, each
-- written only once the store's format says every instance reads it:
--
-- * `messages.content_form`: NULL, the content is its JSON as given; 1, the content is one text
--   block (`[{"text":…,"type":"text"}]`, as `Content::text` writes it) stored as its text's JSON
--   string literal alone (`"…"`): 25 bytes less a message, and the column still holds JSON.
-- * A feed event of an insert leaves `status` NULL when its op says it: `complete` for an `add`,
--   `reserved` for a `reserve` (a restored message inserted `interrupted` keeps it).
--
-- `persist_format.level` says which are written: 0, neither (what an instance of version 14
-- reads: a store migrated while such instances may still run it); 1, both. A store created at
-- this version is made at level 1; a store migrated from an earlier version stays at 0 until
-- `persist migrate finish` (once no instance of an earlier build runs). Readers of this version
-- read both forms at either level. Instances read the level when they open.
--
-- A column and a table are added and one trigger made again; no existing row is read or
-- rewritten.

ALTER TABLE messages ADD COLUMN content_form INTEGER;   -- NULL: JSON as given; 1: a text block's string

CREATE TABLE persist_format (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    level INTEGER NOT NULL                          -- 0: as version 14 writes; 1: compact rows
) STRICT;
INSERT INTO persist_format (id, level) VALUES (1, 0);

DROP TRIGGER messages_counters_on_insert;
CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              parent)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id),
           CASE WHEN NEW.status IN ('complete', 'reserved') AND (SELECT level FROM persist_format) >= 1 THEN NULL
                ELSE NEW.status END,
           NEW.parent_seq
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at, active_leaf = NEW.seq,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

DROP TRIGGER messages_touch_thread_on_update;
CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE OF role, content, metadata, status, version ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              delta)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.content_form IS NOT OLD.content_form
                     OR NEW.status IS NOT OLD.status
                     OR (NEW.delta IS NOT NULL AND NEW.delta_version IS NEW.version)
                THEN 'update_content' ELSE 'update' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id), NEW.status,
           CASE WHEN NEW.delta_version IS NEW.version THEN NEW.delta END
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;
