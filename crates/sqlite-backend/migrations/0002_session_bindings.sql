-- persist schema, version 2: which provider session each (agent, thread) resumes.
CREATE TABLE session_bindings (
    agent_id   TEXT    NOT NULL,
    thread_id  TEXT    NOT NULL,
    session_id TEXT    NOT NULL,                    -- the last session bound
    provider   TEXT    NOT NULL,
    runtime_id TEXT,
    work_dir   TEXT,
    state      TEXT    NOT NULL CHECK (state IN ('active', 'reset', 'invalidated')),
    created_at INTEGER NOT NULL,                    -- first bind; kept by later binds
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, thread_id)
) STRICT, WITHOUT ROWID;

-- Deleting a thread removes its bindings.
CREATE INDEX session_bindings_by_thread ON session_bindings (thread_id);
