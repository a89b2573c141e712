-- persist schema for PostgreSQL, version 2: the tenant is part of a thread's identity. A thread
-- is (tenant, thread_id), so two tenants each have their own `general`; messages, idempotency
-- keys and session bindings are keyed by it too. Until now every tenant shared one id space:
-- one tenant's writes to an id another tenant used were refused (so it could probe which ids
-- were taken, and squat an id before its owner).
--
-- `tenant` is '' for the threads without a tenant (no tenant id is empty), so every key is an
-- ordinary NOT NULL column (a listing across tenants orders it bytewise, `COLLATE "C"`, as every
-- id is ordered; the column keeps its collation, so a view of your own over it survives). Each
-- thread keeps the tenant it had; its messages and its session bindings take that tenant (a binding of a thread that
-- does not exist takes none). The migration runs in one transaction: all of it or nothing.

UPDATE threads SET tenant = '' WHERE tenant IS NULL;
ALTER TABLE threads
    ALTER COLUMN tenant SET DEFAULT '',
    ALTER COLUMN tenant SET NOT NULL;

ALTER TABLE messages ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
UPDATE messages m SET tenant = t.tenant FROM threads t WHERE t.thread_id = m.thread_id AND t.tenant <> '';

ALTER TABLE session_bindings ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
UPDATE session_bindings b SET tenant = t.tenant FROM threads t WHERE t.thread_id = b.thread_id AND t.tenant <> '';

-- The keys, children first.
ALTER TABLE messages
    DROP CONSTRAINT messages_thread_id_fkey,
    DROP CONSTRAINT messages_pkey,
    DROP CONSTRAINT messages_thread_id_seq_key,
    DROP CONSTRAINT messages_thread_id_idempotency_key_key;
ALTER TABLE threads DROP CONSTRAINT threads_pkey;
ALTER TABLE threads ADD PRIMARY KEY (tenant, thread_id);
ALTER TABLE messages
    ADD PRIMARY KEY (tenant, thread_id, message_id),
    ADD UNIQUE (tenant, thread_id, seq),                 -- also serves listing by seq
    ADD UNIQUE (tenant, thread_id, idempotency_key),     -- a retried write finds its first copy
    ADD FOREIGN KEY (tenant, thread_id) REFERENCES threads (tenant, thread_id);
ALTER TABLE session_bindings DROP CONSTRAINT session_bindings_pkey;
ALTER TABLE session_bindings ADD PRIMARY KEY (tenant, agent_id, thread_id);

-- Serves "a tenant's threads, most recently updated first". A listing across tenants (for
-- operators) sorts instead: an index for it would cost every write to a thread one more entry.
DROP INDEX threads_by_activity;
CREATE INDEX threads_by_activity ON threads (tenant, updated_at DESC, thread_id DESC) WHERE deleted_at IS NULL;

-- Deleting a thread removes its bindings.
DROP INDEX session_bindings_by_thread;
CREATE INDEX session_bindings_by_thread ON session_bindings (tenant, thread_id);
