-- persist schema, version 21: working memory in the change feed (see `persist::feed`). Every
-- write of a document is one event of `persist_events`, written by the triggers below in the
-- write's transaction: op 7 (`write_memory`), the document's tenant and resource, its new
-- version; no thread (`thread` and `thread_id` NULL). `persist_feed`, read beside it, gains the
-- column too (always NULL there: that table is no longer written once a store's format is 2).
--
-- A column is added to each feed table, an index and two triggers; the view is made again; no
-- existing row is read or rewritten.

ALTER TABLE persist_events ADD COLUMN resource TEXT;    -- a working memory event's resource
ALTER TABLE persist_feed ADD COLUMN resource TEXT;      -- always NULL
CREATE INDEX persist_events_by_resource ON persist_events (tenant, resource, position) WHERE resource IS NOT NULL;

DROP VIEW persist_events_read;
CREATE VIEW persist_events_read AS
SELECT e.position, coalesce(e.tenant, t.tenant) AS tenant, coalesce(e.thread_id, t.thread_id) AS thread_id,
       CASE e.op WHEN 0 THEN 'add' WHEN 1 THEN 'reserve' WHEN 2 THEN 'update_content' WHEN 3 THEN 'update'
                 WHEN 5 THEN 'summarize' WHEN 7 THEN 'write_memory' ELSE 'delete' END AS op,
       e.message_id, e.seq, e.version, CASE e.op WHEN 4 THEN 'message' WHEN 6 THEN 'thread' END AS removed,
       e.at, e.prev, e.status, e.delta, e.parent, e.resource
  FROM persist_events e LEFT JOIN threads t ON t.key = e.thread;

CREATE TRIGGER persist_working_memory_inserted AFTER INSERT ON persist_working_memory
BEGIN
    INSERT INTO persist_events (position, thread, op, version, at, tenant, resource)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NULL, 7, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), NEW.tenant, NEW.resource
      FROM persist_feed_state s WHERE s.enabled;
END;

CREATE TRIGGER persist_working_memory_updated AFTER UPDATE OF version ON persist_working_memory
BEGIN
    INSERT INTO persist_events (position, thread, op, version, at, tenant, resource)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NULL, 7, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), NEW.tenant, NEW.resource
      FROM persist_feed_state s WHERE s.enabled;
END;
