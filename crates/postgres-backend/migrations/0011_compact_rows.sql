-- persist schema, version 11: compact rows. Two encodings that take fewer bytes a message, each
-- written only once the store's format says every instance reads it:
--
-- * `messages.content_form`: NULL, the content is its JSON; 1, the content is one text block
--   (`[{"text":…,"type":"text"}]`, as `Content::text` writes it) stored as its text alone, a
--   JSON string (`"…"`): the array, the object and its two keys are left out of every such row.
-- * A feed event of an insert leaves `status` NULL when its op says it: `complete` for an `add`,
--   `reserved` for a `reserve` (a restored message inserted `interrupted` keeps it).
--
-- `persist_format.level` says which are written: 0, neither (what an instance of version 10
-- reads: a schema migrated while such instances may still run against it); 1, both. A schema
-- created at this version is made at level 1; one migrated from an earlier version stays at 0
-- until `persist migrate finish` (once no instance of an earlier build runs). Readers of this
-- version read both forms at either level. The statements that write a content store
-- `persist_stored_content(c)` and `persist_content_form(c)` for it, which read the level: a
-- finished store is written compact from the next write on, by every instance.
--
-- A nullable column (no rewrite), a table and two functions are added, two trigger functions
-- replaced; no existing row is read or rewritten.

ALTER TABLE messages ADD COLUMN content_form SMALLINT;   -- NULL: JSON; 1: a text block's text

CREATE TABLE persist_format (
    id    INT     PRIMARY KEY CHECK (id = 1),
    level INT     NOT NULL                          -- 0: as version 10 writes; 1: compact rows
);
INSERT INTO persist_format (id, level) VALUES (1, 0);

-- 1 when `content` is one text block and the store is finished, else NULL.
CREATE FUNCTION persist_content_form(content jsonb) RETURNS smallint LANGUAGE sql STABLE PARALLEL SAFE
SET search_path FROM CURRENT AS $$
    SELECT 1::smallint
     WHERE jsonb_typeof(content -> 0 -> 'text') = 'string'
       AND content = jsonb_build_array(jsonb_build_object('text', content -> 0 -> 'text', 'type', 'text'))
       AND (SELECT level FROM persist_format) >= 1
$$;

-- What the `content` column holds for `content`: the text alone in the form above, else itself.
CREATE FUNCTION persist_stored_content(content jsonb) RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE
SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN persist_content_form(content) = 1 THEN content -> 0 -> 'text' ELSE content END
$$;

CREATE OR REPLACE FUNCTION persist_feed_messages_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, status, parent)
        SELECT tenant, thread_id, CASE status WHEN 'reserved' THEN 'reserve' ELSE 'add' END, message_id, seq, version,
               CASE WHEN status IN ('complete', 'reserved') AND (SELECT level FROM persist_format) >= 1 THEN NULL
                    ELSE status END,
               parent_seq
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
               CASE WHEN n.content IS DISTINCT FROM o.content OR n.content_form IS DISTINCT FROM o.content_form
                         OR n.status IS DISTINCT FROM o.status
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
