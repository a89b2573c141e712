-- persist schema, version 13: summaries and leases. A summary stands for a range of its thread
-- (the messages of the branch ending at `through_seq`, from `from_seq` on): one per last
-- message, so it is keyed by it. Its content and metadata are JSON text like a message's. A
-- summary written is a feed event (op `summarize`, seq its last message), in the thread's chain
-- of events like the others (`prev`, `feed_last`), so a freed id takes it along.
--
-- A lease is a named, expiring claim on a thread (the instance compacting it), keyed by thread
-- and name; it writes nothing of the thread.
--
-- Two tables are created and a trigger made again; no existing row is read or rewritten.

CREATE TABLE summaries (
    tenant      TEXT    NOT NULL,                   -- '' = no tenant
    thread_id   TEXT    NOT NULL,
    through_seq INTEGER NOT NULL,                   -- the last message covered
    from_seq    INTEGER NOT NULL,                   -- the first seq covered
    content     TEXT    NOT NULL,                   -- JSON
    metadata    TEXT    NOT NULL,                   -- JSON object
    created_at  INTEGER NOT NULL,                   -- microseconds since the epoch
    PRIMARY KEY (tenant, thread_id, through_seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
    tenant     TEXT    NOT NULL,                    -- '' = no tenant
    thread_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,                    -- microseconds since the epoch
    PRIMARY KEY (tenant, thread_id, name)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER summaries_feed_on_insert AFTER INSERT ON summaries
WHEN (SELECT enabled FROM persist_feed_state)
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    VALUES ((SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), trimmed) + 1 FROM persist_feed_state),
            NEW.tenant, NEW.thread_id, 'summarize', NULL, NEW.through_seq, 1, NULL,
            CAST(unixepoch('subsec') * 1000000 AS INTEGER),
            (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id));
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

-- Deleting a thread's oldest message no longer makes its children roots: they go on following
-- it, as history removed before the thread's oldest message (what `Delete::covered` leaves, and
-- retention of the oldest messages one by one), so a branch still reads the summary that covered
-- it. An active branch that ended at a deleted message ends at its parent only when that parent
-- is a message of the thread, else at the thread's last message.
DROP TRIGGER messages_splice_on_delete;

CREATE TRIGGER messages_splice_on_delete AFTER DELETE ON messages
WHEN EXISTS (SELECT 1 FROM threads t WHERE t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id AND t.last_seq >= 0)
BEGIN
    UPDATE messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND seq = OLD.seq + 1 AND parent_seq IS NULL
       AND EXISTS (SELECT 1 FROM messages o WHERE o.tenant = OLD.tenant AND o.thread_id = OLD.thread_id
                                             AND o.seq < OLD.seq);
    UPDATE messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND parent_seq = OLD.seq
       AND EXISTS (SELECT 1 FROM messages o WHERE o.tenant = OLD.tenant AND o.thread_id = OLD.thread_id
                                             AND o.seq < OLD.seq);
    UPDATE threads
       SET active_leaf = coalesce((SELECT p.seq FROM messages p
                                    WHERE p.tenant = OLD.tenant AND p.thread_id = OLD.thread_id
                                      AND p.seq = CASE WHEN OLD.parent_seq IS NULL THEN OLD.seq - 1
                                                       ELSE OLD.parent_seq END),
                                  (SELECT max(m.seq) FROM messages m WHERE m.tenant = OLD.tenant AND m.thread_id = OLD.thread_id))
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND active_leaf = OLD.seq;
END;
