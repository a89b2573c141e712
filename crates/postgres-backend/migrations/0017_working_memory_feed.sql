-- persist schema for PostgreSQL, version 17: working memory in the change feed (see
-- `persist::feed`). Every write of a document is one row of `persist_feed`, written by the
-- trigger below in the write's transaction and sequenced like every event: op `write_memory`,
-- the document's tenant and resource, its new version, no thread (`thread_id` NULL). The row a
-- write makes at version 0 before it locks it (a document never written) records nothing.
--
-- A column and an index are added, `thread_id` may be NULL, a function and a trigger are added;
-- no existing row is read or rewritten.

ALTER TABLE persist_feed ALTER COLUMN thread_id DROP NOT NULL;
ALTER TABLE persist_feed ADD COLUMN resource TEXT;          -- a working memory event's resource
CREATE INDEX persist_feed_by_resource ON persist_feed (tenant, resource, position)
    WHERE resource IS NOT NULL AND position IS NOT NULL;

CREATE FUNCTION persist_feed_memory_written() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF (SELECT enabled FROM persist_feed_state) THEN
        INSERT INTO persist_feed (tenant, resource, op, version) VALUES (NEW.tenant, NEW.resource, 'write_memory', NEW.version);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER persist_feed_memory_written AFTER INSERT OR UPDATE OF version ON persist_working_memory
FOR EACH ROW WHEN (NEW.version > 0) EXECUTE FUNCTION persist_feed_memory_written();
