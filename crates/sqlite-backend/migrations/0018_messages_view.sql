-- persist schema, version 18: `messages_view`, the messages as other tools read them. The rows
-- of `persist_messages` are compact (a thread by its key, UUID ids as 16 bytes, roles as
-- numbers, NULL for common values, one text block as its text): this view reads them back as
-- every SQLite client can show them, with text ids, role and status names and the content's
-- JSON. It is an interface: its columns keep their names and meaning from one version to the
-- next (a version may add columns at the end). Read only; write through persist.
--
-- Columns: tenant (NULL: none), thread_id, message_id, seq, parent_seq (the message it follows;
-- NULL for a root), role, status ('complete', 'reserved' or 'interrupted'), content (JSON),
-- metadata (a JSON object), version, idempotency_key, created_at and updated_at (microseconds
-- since the Unix epoch: `datetime(created_at / 1000000, 'unixepoch')` reads one).

CREATE VIEW messages_view AS
SELECT nullif(t.tenant, '') AS tenant,
       t.thread_id,
       CASE WHEN typeof(m.message_id) = 'blob'
            THEN lower(substr(hex(m.message_id), 1, 8) || '-' || substr(hex(m.message_id), 9, 4) || '-'
                       || substr(hex(m.message_id), 13, 4) || '-' || substr(hex(m.message_id), 17, 4) || '-'
                       || substr(hex(m.message_id), 21, 12))
            ELSE m.message_id END AS message_id,
       m.seq,
       CASE WHEN m.parent_seq IS NULL THEN nullif(m.seq - 1, 0) ELSE nullif(m.parent_seq, 0) END AS parent_seq,
       CASE m.role WHEN 0 THEN 'user' WHEN 1 THEN 'assistant' WHEN 2 THEN 'system' WHEN 3 THEN 'tool'
            ELSE m.role END AS role,
       coalesce(m.status, 'complete') AS status,
       CASE m.content_form WHEN 1 THEN json_array(json_object('type', 'text', 'text', json(m.content)))
            ELSE m.content END AS content,
       coalesce(m.metadata, '{}') AS metadata,
       m.version,
       m.idempotency_key,
       m.created_at,
       coalesce(m.updated_at, m.created_at) AS updated_at
  FROM persist_messages m JOIN threads t ON t.key = m.thread;
