-- persist schema, version 23: a standalone `embed` in the change feed (see `persist::feed`). An
-- `Embed` records one event of `persist_events` in its transaction (written by the write itself,
-- not by a trigger: the vector an `add` or a turn inserts with its message has the insert's
-- event): op 8 (`embed`), the message's thread, id, seq and version, no status, no delta. The
-- view that reads the table names the new op; an instance of an earlier version, which would read
-- it as a delete, refuses the store as one ahead of it.
--
-- The view is made again; no existing row is read or rewritten.

DROP VIEW persist_events_read;
CREATE VIEW persist_events_read AS
SELECT e.position, coalesce(e.tenant, t.tenant) AS tenant, coalesce(e.thread_id, t.thread_id) AS thread_id,
       CASE e.op WHEN 0 THEN 'add' WHEN 1 THEN 'reserve' WHEN 2 THEN 'update_content' WHEN 3 THEN 'update'
                 WHEN 5 THEN 'summarize' WHEN 7 THEN 'write_memory' WHEN 8 THEN 'embed' ELSE 'delete' END AS op,
       e.message_id, e.seq, e.version, CASE e.op WHEN 4 THEN 'message' WHEN 6 THEN 'thread' END AS removed,
       e.at, e.prev, e.status, e.delta, e.parent, e.resource
  FROM persist_events e LEFT JOIN threads t ON t.key = e.thread;
