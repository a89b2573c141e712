-- persist schema, version 5: interrupted replies. A message's status may be 'interrupted' (a
-- reservation whose stream stopped before its end, its text so far kept), and each feed event
-- of a message records the status the change left (NULL for deletes and the thread's own
-- changes; events recorded before this version have none).
--
-- Both changes are to the catalog only: the wider check is added NOT VALID, so the table is not
-- scanned under the migration's lock (every stored row passed the narrower check it replaces),
-- and the feed's new column has no default, so no row is rewritten.

ALTER TABLE messages
    DROP CONSTRAINT messages_status_check,
    ADD CONSTRAINT messages_status_check CHECK (status IN ('reserved', 'complete', 'interrupted')) NOT VALID;

ALTER TABLE persist_feed ADD COLUMN status TEXT;   -- reserved, complete, interrupted (messages only)

CREATE OR REPLACE FUNCTION persist_feed_messages_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, status)
        SELECT tenant, thread_id, CASE status WHEN 'reserved' THEN 'reserve' ELSE 'add' END, message_id, seq, version,
               status
          FROM written ORDER BY tenant, thread_id, seq;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION persist_feed_messages_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, status)
        SELECT n.tenant, n.thread_id,
               CASE WHEN n.content IS DISTINCT FROM o.content OR n.status IS DISTINCT FROM o.status
                    THEN 'update_content' ELSE 'update' END,
               n.message_id, n.seq, n.version, n.status
          FROM written n JOIN was o USING (tenant, thread_id, message_id)
         ORDER BY n.tenant, n.thread_id, n.seq;
    END IF;
    RETURN NULL;
END $$;
