-- persist schema, version 9: summaries and leases. A summary stands for a range of its thread
-- (the messages of the branch ending at `through_seq`, from `from_seq` on): one per last
-- message, so it is keyed by it. Its content and metadata are JSONB like a message's. A
-- summary written is a feed event (op `summarize`, seq its last message).
--
-- A lease is a named, expiring claim on a thread (the instance compacting it), keyed by thread
-- and name; it writes nothing of the thread.
--
-- Two tables are created; no existing row is read or rewritten, no lock is taken on another
-- table.

CREATE TABLE summaries (
    tenant      TEXT   NOT NULL,                    -- '' = no tenant
    thread_id   TEXT   NOT NULL,
    through_seq BIGINT NOT NULL,                    -- the last message covered
    from_seq    BIGINT NOT NULL,                    -- the first seq covered
    content     JSONB  NOT NULL,
    metadata    JSONB  NOT NULL,                    -- an object
    created_at  BIGINT NOT NULL,                    -- microseconds since the epoch
    PRIMARY KEY (tenant, thread_id, through_seq)
);

CREATE TABLE leases (
    tenant     TEXT   NOT NULL,                     -- '' = no tenant
    thread_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,                     -- microseconds since the epoch
    PRIMARY KEY (tenant, thread_id, name)
);

CREATE FUNCTION persist_feed_summary_written() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version)
        VALUES (NEW.tenant, NEW.thread_id, 'summarize', NULL, NEW.through_seq, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_summary_written AFTER INSERT ON summaries
FOR EACH ROW EXECUTE FUNCTION persist_feed_summary_written();
