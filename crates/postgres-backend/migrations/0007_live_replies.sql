-- persist schema, version 7: live replies. A feed event of a content update that added to the
-- end of a message's content (a streamed token, a stream's end, a heartbeat) records what it
-- added, `delta` (JSON content blocks, as text), so that a follower adds it to the text it
-- holds instead of reading the message again. The writer puts the delta of each content update
-- in the message's row (`messages.delta`: NULL when the update replaced the content, or changed
-- only metadata or role) with the version it brings the message to (`delta_version`), and the
-- update trigger copies it into the event only when that is the row's new version: an update
-- that does not set them (an instance of an earlier version, a statement of your own) leaves a
-- delta that is not its own, which no event takes.
--
-- Retention clears the deltas of events older than its delta age (the event stays, saying
-- "read the message"): `persist_feed_deltas` finds them without reading the whole feed.
--
-- Catalog changes only: the new columns have no default (no row is rewritten), the index is
-- empty when made (no event has a delta yet), and one trigger function is replaced.

ALTER TABLE messages ADD COLUMN delta TEXT;       -- the last content update's delta, JSON
ALTER TABLE messages ADD COLUMN delta_version BIGINT;   -- the version that delta made
ALTER TABLE persist_feed ADD COLUMN delta TEXT;   -- what an update_content added, JSON

CREATE INDEX persist_feed_deltas ON persist_feed (at) WHERE delta IS NOT NULL;

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
         ORDER BY n.tenant, n.thread_id, n.seq;
    END IF;
    RETURN NULL;
END $$;
