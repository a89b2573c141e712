-- persist schema, version 13: summaries and leases. A summary stands for a range of its thread
-- (the messages of the branch ending at `through_seq`, from `from_seq` on): one per last
-- message, so it is keyed by it. Its content and metadata are JSON text like a message's. A
-- summary written is a feed event (op `summarize`, seq its last message), in the thread's chain
-- of events like the others (`prev`, `feed_last`), so a freed id takes it along.
--
-- A lease is a named, expiring claim on a thread (the instance compacting it), keyed by thread
-- and name; it writes nothing of the thread.
--
-- Two tables are created; no existing row is read or rewritten.

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
