-- persist schema, version 11: live replies. A feed event of a content update that added to the
-- end of a message's content (a streamed token, a stream's end, a heartbeat) records what it
-- added, `delta` (JSON content blocks), so that a follower adds it to the text it holds
-- instead of reading the message again. The writer puts the delta of each content update in
-- the message's row (`messages.delta`: NULL when the update replaced the content, or changed
-- only metadata or role) with the version it brings the message to (`delta_version`), and the
-- update trigger copies it into the event only when that is the row's new version: an update
-- that does not set them (a writer of an earlier version, a statement of your own) leaves a
-- delta that is not its own, which no event takes.
--
-- Retention clears the deltas of events older than its delta age (the event stays, saying
-- "read the message"): `persist_feed_deltas` finds them without reading the whole feed.
--
-- Only columns are added (no row is rewritten) and one trigger is made again: cheap on a file
-- of any size.

ALTER TABLE messages ADD COLUMN delta TEXT;       -- the last content update's delta, JSON
ALTER TABLE messages ADD COLUMN delta_version INTEGER;   -- the version that delta made
ALTER TABLE persist_feed ADD COLUMN delta TEXT;   -- what an update_content added, JSON

CREATE INDEX persist_feed_deltas ON persist_feed (at) WHERE delta IS NOT NULL;

DROP TRIGGER messages_touch_thread_on_update;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE ON messages
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
