-- persist schema, version 6: the tenant is part of a thread's identity. A thread is
-- (tenant, thread_id), so two tenants each have their own `general`; messages, idempotency keys
-- and session bindings are keyed by it too. Until now every tenant shared one id space: one
-- tenant's writes to an id another tenant used were refused (so it could probe which ids were
-- taken, and squat an id before its owner).
--
-- `tenant` is '' for the threads without a tenant (no tenant id is empty), so every key is an
-- ordinary NOT NULL column. Each thread keeps the tenant it had; its messages and its session
-- bindings take that tenant (a binding of a thread that does not exist takes none). A message
-- without its thread (a file once written with foreign keys off) fails the migration loudly on
-- the foreign key rather than being left behind.
--
-- SQLite cannot change a table's key: the three tables are rebuilt, rows copied as they are,
-- messages in their arrival order. This runs in one transaction with the other migrations'
-- guarantees: all of it or nothing.

CREATE TABLE threads_v6 (
    tenant        TEXT    NOT NULL DEFAULT '',        -- '' = no tenant
    thread_id     TEXT    NOT NULL,
    title         TEXT,
    metadata      TEXT    NOT NULL DEFAULT '{}',    -- JSON object
    version       INTEGER NOT NULL DEFAULT 1,       -- +1 on every title/metadata change
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,                 -- last change to the thread or its messages
    last_seq      INTEGER NOT NULL DEFAULT 0,       -- highest seq ever assigned (never lowered)
    message_count INTEGER NOT NULL DEFAULT 0,       -- messages currently stored
    deleted_at    INTEGER,                          -- set = tombstone
    PRIMARY KEY (tenant, thread_id)
) STRICT;

INSERT INTO threads_v6 (tenant, thread_id, title, metadata, version, created_at, updated_at, last_seq,
                        message_count, deleted_at)
     SELECT coalesce(tenant, ''), thread_id, title, metadata, version, created_at, updated_at, last_seq,
            message_count, deleted_at
       FROM threads;

CREATE TABLE messages_v6 (
    tenant          TEXT    NOT NULL DEFAULT '',    -- the thread's tenant
    thread_id       TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    seq             INTEGER NOT NULL,               -- 1, 2, 3… per thread, never reused
    role            TEXT    NOT NULL,               -- user, assistant, system, tool, …
    content         TEXT    NOT NULL,               -- JSON; '[]' while reserved
    metadata        TEXT    NOT NULL,               -- JSON object
    status          TEXT    NOT NULL CHECK (status IN ('reserved', 'complete')),
    version         INTEGER NOT NULL,               -- 1 on insert, +1 on every change
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    FOREIGN KEY (tenant, thread_id) REFERENCES threads_v6 (tenant, thread_id),
    UNIQUE (tenant, thread_id, message_id),         -- identity is (tenant, thread_id, message_id)
    UNIQUE (tenant, thread_id, seq)                 -- also serves listing by seq
) STRICT;

INSERT INTO messages_v6 (tenant, thread_id, message_id, seq, role, content, metadata, status, version,
                         idempotency_key, created_at, updated_at)
     SELECT coalesce(t.tenant, ''), m.thread_id, m.message_id, m.seq, m.role, m.content, m.metadata, m.status,
            m.version, m.idempotency_key, m.created_at, m.updated_at
       FROM messages m LEFT JOIN threads_v6 t ON t.thread_id = m.thread_id
      ORDER BY m.rowid;

CREATE TABLE session_bindings_v6 (
    tenant     TEXT    NOT NULL DEFAULT '',         -- the thread's tenant
    agent_id   TEXT    NOT NULL,
    thread_id  TEXT    NOT NULL,
    session_id TEXT    NOT NULL,                    -- the last session bound
    provider   TEXT    NOT NULL,
    runtime_id TEXT,
    work_dir   TEXT,
    state      TEXT    NOT NULL CHECK (state IN ('active', 'reset', 'invalidated')),
    created_at INTEGER NOT NULL,                    -- first bind; kept by later binds
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent_id, thread_id)
) STRICT, WITHOUT ROWID;

INSERT INTO session_bindings_v6 (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, state,
                                 created_at, updated_at)
     SELECT coalesce((SELECT t.tenant FROM threads_v6 t WHERE t.thread_id = b.thread_id), ''),
            b.agent_id, b.thread_id, b.session_id, b.provider, b.runtime_id, b.work_dir, b.state,
            b.created_at, b.updated_at
       FROM session_bindings b;

-- Children first: nothing may reference a table as it goes. Dropping a table drops its
-- indexes and triggers (an index of your own on these tables goes too: create it again).
DROP TABLE messages;
DROP TABLE session_bindings;
DROP TABLE threads;

-- The legacy rename neither checks nor rewrites other objects, so a view or trigger of your
-- own that reads these tables finds the new ones by their names (the modern rename would refuse
-- it for naming a table that no longer exists). With foreign keys on, as persist opens the
-- file, the reference of `messages` to `threads_v6` follows the rename either way.
PRAGMA legacy_alter_table = ON;
ALTER TABLE threads_v6 RENAME TO threads;
ALTER TABLE messages_v6 RENAME TO messages;
ALTER TABLE session_bindings_v6 RENAME TO session_bindings;
PRAGMA legacy_alter_table = OFF;

-- Serves "a tenant's threads, most recently updated first". A listing across tenants (for
-- operators) sorts instead: an index for it would cost every write to a thread one more entry.
CREATE INDEX threads_by_activity ON threads (tenant, updated_at DESC, thread_id DESC)
    WHERE deleted_at IS NULL;

-- A retried write finds its first copy.
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (tenant, thread_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX messages_reserved_by_age ON messages (created_at) WHERE status = 'reserved';

-- Deleting a thread removes its bindings.
CREATE INDEX session_bindings_by_thread ON session_bindings (tenant, thread_id);

CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE ON messages
BEGIN
    UPDATE threads SET updated_at = NEW.updated_at WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_counters_on_delete AFTER DELETE ON messages
BEGIN
    UPDATE threads SET message_count = message_count - 1 WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id;
END;
