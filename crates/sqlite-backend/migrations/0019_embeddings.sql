-- persist schema, version 19: embeddings (see `persist::vector`). `persist_embeddings` holds a
-- message's vector per model, scaled to length 1, as its numbers' little-endian `f32` bytes;
-- `row` is the message's `persist_messages.row`, `thread` its thread's key and `seq` its seq
-- (a scan goes thread by thread, and breaks ties by seq without reading the message). `persist_embedding_models` fixes each model's dimensions per tenant ('' for none), at
-- its first vector.
--
-- A vector goes with its message, in the transaction of the write that removes it (a delete, a
-- clear, a purge, retention, truncation) or that changes the content of a finished message (its
-- vector described the old content). A reservation has none, so a stream's appends fire nothing.
--
-- Two tables and two triggers are added; no existing row is read or rewritten.

CREATE TABLE persist_embedding_models (
    tenant TEXT    NOT NULL,
    model  TEXT    NOT NULL,
    dims   INTEGER NOT NULL,
    PRIMARY KEY (tenant, model)
) STRICT;

CREATE TABLE persist_embeddings (
    row    INTEGER NOT NULL,                        -- persist_messages.row
    model  TEXT    NOT NULL,
    thread INTEGER NOT NULL,                        -- threads.key
    seq    INTEGER NOT NULL,                        -- the message's seq (never changes)
    vector BLOB    NOT NULL,                        -- the unit vector, f32 little-endian
    PRIMARY KEY (row, model)
) STRICT;
CREATE INDEX persist_embeddings_by_thread ON persist_embeddings (thread, model);

CREATE TRIGGER persist_embeddings_message_deleted AFTER DELETE ON persist_messages
BEGIN
    DELETE FROM persist_embeddings WHERE row = OLD.row;
END;

CREATE TRIGGER persist_embeddings_content_changed AFTER UPDATE OF content ON persist_messages
WHEN OLD.status IS NOT 'reserved' AND OLD.content IS NOT NEW.content
BEGIN
    DELETE FROM persist_embeddings WHERE row = OLD.row;
END;
