-- persist schema, version 8: branches. A thread is a tree of messages: each message follows
-- a parent, and the thread names the last message of its active branch (`active_leaf`), which a
-- message written without a parent follows. Each thread stays the line it was: its messages
-- follow one another and its active leaf is its last message.
--
-- Most messages follow the message just before them in seq, so `parent_seq` is stored only
-- where a message does not: NULL means "seq - 1" (or, at seq 1, a root), 0 a root elsewhere,
-- any other value the parent's seq. A branch is then a few runs of consecutive seqs, and only
-- the messages that start a run hold a value: the partial indexes below hold those alone, by
-- seq with their parent (walking a branch up reads them, newest first, from the index alone)
-- and by parent (a message's children other than the one just after it). A thread written as a line has no entry in either, and no message of
-- it stores a byte more.
--
-- A feed event of an insert records the message's parent as it stores it (`parent`): a
-- follower learns where a new branch starts.
--
-- `prev_leaf` is the active leaf an insert found under the thread's lock, returned by the
-- insert's own statement to its message (the row returns only new values).
--
-- Columns are added without defaults (no row is rewritten); only the messages stored after a
-- gap (whose seq - 1 was deleted) are given their parent, the message before them. The feed's
-- update trigger is replaced first, to record only updates that move a message's version: that
-- backfill, and a deleted message's children following its parent, are not writes of theirs.

ALTER TABLE messages ADD COLUMN parent_seq BIGINT;   -- NULL: seq - 1 (a root at 1); 0: a root; else the parent
ALTER TABLE threads ADD COLUMN active_leaf BIGINT;   -- the active branch's last message; NULL: none
ALTER TABLE threads ADD COLUMN prev_leaf BIGINT;     -- the active leaf before the last insert
ALTER TABLE persist_feed ADD COLUMN parent BIGINT;   -- an insert's parent_seq, as the message stores it

CREATE OR REPLACE FUNCTION persist_feed_messages_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, status, parent)
        SELECT tenant, thread_id, CASE status WHEN 'reserved' THEN 'reserve' ELSE 'add' END, message_id, seq, version,
               status, parent_seq
          FROM written ORDER BY tenant, thread_id, seq;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION persist_feed_messages_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, status, delta)
        SELECT n.tenant, n.thread_id,
               CASE WHEN n.content IS DISTINCT FROM o.content OR n.status IS DISTINCT FROM o.status
                         OR (n.delta IS NOT NULL AND n.delta_version = n.version)
                    THEN 'update_content' ELSE 'update' END,
               n.message_id, n.seq, n.version, n.status,
               CASE WHEN n.delta_version = n.version THEN n.delta END
          FROM written n JOIN was o USING (tenant, thread_id, message_id)
         WHERE n.version IS DISTINCT FROM o.version
         ORDER BY n.tenant, n.thread_id, n.seq;
    END IF;
    RETURN NULL;
END $$;

UPDATE messages m
   SET parent_seq = coalesce((SELECT max(p.seq) FROM messages p
                               WHERE p.tenant = m.tenant AND p.thread_id = m.thread_id AND p.seq < m.seq), 0)
 WHERE m.seq > 1
   AND NOT EXISTS (SELECT 1 FROM messages p WHERE p.tenant = m.tenant AND p.thread_id = m.thread_id AND p.seq = m.seq - 1);

UPDATE threads t
   SET active_leaf = (SELECT max(m.seq) FROM messages m WHERE m.tenant = t.tenant AND m.thread_id = t.thread_id)
 WHERE t.message_count > 0;

CREATE INDEX messages_run_starts ON messages (tenant, thread_id, seq) INCLUDE (parent_seq) WHERE parent_seq IS NOT NULL;
CREATE INDEX messages_run_starts_by_parent ON messages (tenant, thread_id, parent_seq) WHERE parent_seq IS NOT NULL;
