-- persist schema for PostgreSQL, version 15: embeddings (see `persist::vector`).
-- `persist_embeddings` holds a message's vector per model, scaled to length 1, as its numbers'
-- little-endian `f32` bytes (without pgvector: a `nearest` scans the scope's vectors exactly, and
-- bytes are read ten times as fast as `real[]`); `persist_embedding_models`
-- fixes each model's dimensions per tenant ('' for none), at its first vector.
--
-- A vector goes with its message, in the transaction of the write that removes it (the foreign
-- key's cascade: a delete, a clear, a purge, retention, truncation) or that changes the content
-- of a finished message (the trigger: its vector described the old content). A reservation has
-- none, so a stream's appends fire nothing.
--
-- Two tables, an index, a function and a trigger are added; no existing row is read or rewritten.

CREATE TABLE persist_embedding_models (
    tenant TEXT NOT NULL,
    model  TEXT NOT NULL,
    dims   INT  NOT NULL,
    PRIMARY KEY (tenant, model)
);

CREATE TABLE persist_embeddings (
    tenant     TEXT   NOT NULL,
    thread_id  TEXT   NOT NULL,
    message_id TEXT   NOT NULL,
    model      TEXT   NOT NULL,
    vector     BYTEA  NOT NULL,                     -- the unit vector, f32 little-endian
    PRIMARY KEY (tenant, thread_id, message_id, model),
    FOREIGN KEY (tenant, thread_id, message_id) REFERENCES messages (tenant, thread_id, message_id) ON DELETE CASCADE
);
CREATE INDEX persist_embeddings_by_model ON persist_embeddings (tenant, model);

CREATE FUNCTION persist_embeddings_stale() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM persist_embeddings
     WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id AND message_id = OLD.message_id;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_embeddings_stale AFTER UPDATE OF content ON messages
FOR EACH ROW WHEN (OLD.status <> 'reserved' AND OLD.content IS DISTINCT FROM NEW.content)
EXECUTE FUNCTION persist_embeddings_stale();
