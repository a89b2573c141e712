-- persist schema for PostgreSQL, version 14: `messages_view`, the messages as other tools read
-- them. `messages` stores a content that is one text block as its text alone (`content_form`
-- 1, version 11), the tenant '' for none and a parent only where it is not the message before:
-- this view reads them back as `psql` and any client can show them, with the content's JSON
-- whole. It is an interface: its columns keep their names and meaning from one version to the
-- next (a version may add columns at the end). Read only (it reads two tables, so PostgreSQL
-- refuses writes through it); write through persist.
--
-- Columns: tenant (NULL: none), thread_id, message_id, seq, parent_seq (the message it follows;
-- NULL for a root), role, status ('complete', 'reserved' or 'interrupted'), content (jsonb),
-- metadata (a jsonb object), version, idempotency_key, created_at and updated_at (microseconds
-- since the Unix epoch: `to_timestamp(created_at / 1e6)` reads one).

CREATE VIEW messages_view AS
SELECT nullif(m.tenant, '') AS tenant,
       t.thread_id,
       m.message_id,
       m.seq,
       CASE WHEN m.parent_seq IS NULL THEN nullif(m.seq - 1, 0) ELSE nullif(m.parent_seq, 0) END AS parent_seq,
       m.role,
       m.status,
       CASE WHEN m.content_form = 1 THEN jsonb_build_array(jsonb_build_object('type', 'text', 'text', m.content))
            ELSE m.content END AS content,
       m.metadata,
       m.version,
       m.idempotency_key,
       m.created_at,
       m.updated_at
  FROM messages m JOIN threads t ON t.tenant = m.tenant AND t.thread_id = m.thread_id;
