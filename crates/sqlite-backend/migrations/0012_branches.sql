-- persist schema, version 12: branches. A thread is a tree of messages: each message follows
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
-- Deleting a message takes it out of its branch: its children follow its parent, and a thread
-- whose active branch ended at it ends at its parent (at its last message, for a root) (`messages_splice_on_delete`; skipped
-- while a whole thread is being deleted, its `last_seq` marked negative).
--
-- Columns are added (no row is rewritten) and only the messages stored after a gap (one whose
-- seq - 1 was deleted) are given their parent, the message before them, in the same
-- transaction. The message update trigger is made again for changes of what a write changes
-- (its columns), so neither that nor a splice records a feed event or touches a thread.

ALTER TABLE messages ADD COLUMN parent_seq INTEGER;   -- NULL: seq - 1 (a root at 1); 0: a root; else the parent
ALTER TABLE threads ADD COLUMN active_leaf INTEGER;   -- the active branch's last message; NULL: none
ALTER TABLE persist_feed ADD COLUMN parent INTEGER;   -- an insert's parent_seq, as the message stores it

DROP TRIGGER messages_touch_thread_on_update;

UPDATE messages
   SET parent_seq = coalesce((SELECT max(p.seq) FROM messages p
                               WHERE p.tenant = messages.tenant AND p.thread_id = messages.thread_id
                                 AND p.seq < messages.seq), 0)
 WHERE seq > 1
   AND NOT EXISTS (SELECT 1 FROM messages p
                    WHERE p.tenant = messages.tenant AND p.thread_id = messages.thread_id AND p.seq = messages.seq - 1);

UPDATE threads
   SET active_leaf = (SELECT max(m.seq) FROM messages m WHERE m.tenant = threads.tenant AND m.thread_id = threads.thread_id);

CREATE INDEX messages_run_starts ON messages (tenant, thread_id, seq, parent_seq) WHERE parent_seq IS NOT NULL;
CREATE INDEX messages_run_starts_by_parent ON messages (tenant, thread_id, parent_seq) WHERE parent_seq IS NOT NULL;

DROP TRIGGER messages_counters_on_insert;

CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              parent)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id), NEW.status,
           NEW.parent_seq
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at, active_leaf = NEW.seq,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE OF role, content, metadata, status, version ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              delta)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.status IS NOT OLD.status
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

-- The deleted message's parent: its seq - 1 (none at 1) when it stored none, none for 0.
CREATE TRIGGER messages_splice_on_delete AFTER DELETE ON messages
WHEN EXISTS (SELECT 1 FROM threads t WHERE t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id AND t.last_seq >= 0)
BEGIN
    UPDATE messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND seq = OLD.seq + 1 AND parent_seq IS NULL;
    UPDATE messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND parent_seq = OLD.seq;
    UPDATE threads
       SET active_leaf = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                       ELSE nullif(OLD.parent_seq, 0) END,
                                  (SELECT max(m.seq) FROM messages m WHERE m.tenant = OLD.tenant AND m.thread_id = OLD.thread_id))
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND active_leaf = OLD.seq;
END;
