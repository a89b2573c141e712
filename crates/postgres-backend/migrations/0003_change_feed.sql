-- persist schema, version 3: the change feed. Every committed change of a message or of a
-- thread's version or tombstone is one row of `persist_feed`, written by the triggers below in
-- the transaction of the write: a write that rolls back leaves no event, a committed write
-- always has its events.
--
-- Rows are numbered twice. `id` is taken when the row is written: the writers of one thread
-- hold its row lock until they commit, so a thread's ids follow its commit order, but across
-- threads a smaller id can commit later than a larger one, so a reader resuming "after id N"
-- could miss it. `position` is given after commit by the sequencer (see `feed.rs`), one at a
-- time under an advisory lock, to the committed rows still without one, in id order: positions
-- are store-wide, in commit order, never reused, and a reader of "position > N" misses nothing.
--
-- `persist_feed_state` holds the newest position given (`head`), the newest removed by
-- retention (`trimmed`: resuming from before it is a gap) and whether the feed records at all
-- (`enabled`, set by the instance that connects last).
--
-- A thread delete marks the thread deleted before it removes the messages, so the messages
-- it removes have no events of their own: the thread's delete says it all.

CREATE TABLE persist_feed (
    id         BIGSERIAL PRIMARY KEY,
    position   BIGINT UNIQUE,                       -- NULL until sequenced
    tenant     TEXT   NOT NULL,                     -- '' = no tenant
    thread_id  TEXT   NOT NULL,
    op         TEXT   NOT NULL,                     -- add, reserve, update_content, update, delete
    message_id TEXT,                                -- NULL: the thread's own change
    seq        BIGINT,
    version    BIGINT NOT NULL,
    removed    TEXT,                                -- message, thread (deletes only)
    at         BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
);

CREATE INDEX persist_feed_pending ON persist_feed (id) WHERE position IS NULL;
CREATE INDEX persist_feed_by_thread ON persist_feed (tenant, thread_id, position) WHERE position IS NOT NULL;

CREATE TABLE persist_feed_state (
    id      INT     PRIMARY KEY CHECK (id = 1),
    head    BIGINT  NOT NULL,
    trimmed BIGINT  NOT NULL,
    enabled BOOLEAN NOT NULL
);

INSERT INTO persist_feed_state (id, head, trimmed, enabled) VALUES (1, 0, 0, true);

-- Messages: one trigger per statement, reading the statement's rows (a group of inserts or
-- updates is one statement), each thread's in seq order.
CREATE FUNCTION persist_feed_messages_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version)
        SELECT tenant, thread_id, CASE status WHEN 'reserved' THEN 'reserve' ELSE 'add' END, message_id, seq, version
          FROM written ORDER BY tenant, thread_id, seq;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_messages_inserted AFTER INSERT ON messages
REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION persist_feed_messages_inserted();

CREATE FUNCTION persist_feed_messages_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version)
        SELECT n.tenant, n.thread_id,
               CASE WHEN n.content IS DISTINCT FROM o.content OR n.status IS DISTINCT FROM o.status
                    THEN 'update_content' ELSE 'update' END,
               n.message_id, n.seq, n.version
          FROM written n JOIN was o USING (tenant, thread_id, message_id)
         ORDER BY n.tenant, n.thread_id, n.seq;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_messages_updated AFTER UPDATE ON messages
REFERENCING OLD TABLE AS was NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION persist_feed_messages_updated();

CREATE FUNCTION persist_feed_messages_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed)
        SELECT o.tenant, o.thread_id, 'delete', o.message_id, o.seq, o.version, 'message'
          FROM was o JOIN threads t ON t.tenant = o.tenant AND t.thread_id = o.thread_id AND t.deleted_at IS NULL
         ORDER BY o.tenant, o.thread_id, o.seq;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_messages_deleted AFTER DELETE ON messages
REFERENCING OLD TABLE AS was FOR EACH STATEMENT EXECUTE FUNCTION persist_feed_messages_deleted();

-- Threads: a row trigger whose condition is checked without calling it, so the updates every
-- message write makes to its thread (counters, `updated_at`) cost nothing here.
CREATE FUNCTION persist_feed_thread_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO persist_feed (tenant, thread_id, op, version, removed)
            VALUES (OLD.tenant, OLD.thread_id, 'delete', OLD.version, 'thread');
        ELSIF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
            INSERT INTO persist_feed (tenant, thread_id, op, version, removed)
            VALUES (NEW.tenant, NEW.thread_id, 'delete', NEW.version, 'thread');
        ELSE
            INSERT INTO persist_feed (tenant, thread_id, op, version)
            VALUES (NEW.tenant, NEW.thread_id, 'update', NEW.version);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_thread_changed AFTER UPDATE OF version, deleted_at ON threads
FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
EXECUTE FUNCTION persist_feed_thread_changed();

CREATE TRIGGER persist_feed_thread_removed AFTER DELETE ON threads
FOR EACH ROW WHEN (OLD.deleted_at IS NULL) EXECUTE FUNCTION persist_feed_thread_changed();
