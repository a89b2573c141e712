-- persist schema for PostgreSQL, version 1.
-- Times are microseconds since the Unix epoch (UTC), exact and the same as the SQLite backend's;
-- read one with to_timestamp(created_at / 1e6).

-- One row per conversation. Its row lock orders writers of the thread: every write locks it
-- first, so seqs are assigned in commit order and writers of other threads never wait.
CREATE TABLE threads (
    thread_id     TEXT    COLLATE "C" NOT NULL PRIMARY KEY,  -- bytewise order, as every backend
    tenant        TEXT,                             -- owner; NULL = created by trusted host code
    title         TEXT,
    metadata      JSONB   NOT NULL DEFAULT '{}',
    version       BIGINT  NOT NULL DEFAULT 1,       -- +1 on every title/metadata change
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,                 -- last change to the thread or its messages
    last_seq      BIGINT  NOT NULL DEFAULT 0,       -- highest seq ever assigned (never lowered)
    message_count BIGINT  NOT NULL DEFAULT 0,       -- messages currently stored
    deleted_at    BIGINT                            -- set = tombstone: later writes are refused
);

CREATE INDEX threads_by_activity ON threads (updated_at DESC, thread_id DESC) WHERE deleted_at IS NULL;

-- One row per message; identity is (thread_id, message_id), never message_id alone.
CREATE TABLE messages (
    thread_id       TEXT    NOT NULL REFERENCES threads (thread_id),
    message_id      TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,               -- 1, 2, 3… per thread, never reused
    role            TEXT    NOT NULL,
    content         JSONB   NOT NULL,               -- '[]' while reserved
    metadata        JSONB   NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('reserved', 'complete')),
    version         BIGINT  NOT NULL,
    idempotency_key TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (thread_id, message_id),
    UNIQUE (thread_id, seq),                        -- also serves listing by seq
    UNIQUE (thread_id, idempotency_key)             -- a retried write finds its first copy
);

-- Finds reservations stranded by streams that never finished.
CREATE INDEX messages_reserved_by_age ON messages (created_at) WHERE status = 'reserved';

-- Which provider session each (agent, thread) resumes.
CREATE TABLE session_bindings (
    agent_id   TEXT   NOT NULL,
    thread_id  TEXT   NOT NULL,
    session_id TEXT   NOT NULL,
    provider   TEXT   NOT NULL,
    runtime_id TEXT,
    work_dir   TEXT,
    state      TEXT   NOT NULL CHECK (state IN ('active', 'reset', 'invalidated')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, thread_id)
);

CREATE INDEX session_bindings_by_thread ON session_bindings (thread_id);
