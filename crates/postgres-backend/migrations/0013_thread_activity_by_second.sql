-- persist schema, version 13: threads listed by activity from an index that a message write
-- does not change.
--
-- Every message write updates its thread's row (its counters, its last seq, `updated_at`).
-- Until now `updated_at` was a column of `threads_by_activity`, so none of those updates could
-- be a heap-only (HOT) update: each one wrote a new version of the row elsewhere and a new entry
-- in both of the table's indexes, dead as soon as the next write came (measured: 118 bytes of
-- `threads` and its indexes per message written, 100 threads taking 100,000 messages, against
-- 5 bytes with the index below, where 96% of the updates were HOT, and 16% more updates a
-- second).
--
-- The new index holds the second of a thread's last activity, `active_second`
-- (`updated_at / 1000000`, kept by the trigger below whatever statement writes `updated_at`,
-- this version's or an earlier one's): it changes at most once a second per thread, so the
-- other writes of that second are HOT. A listing reads it in seconds, newest first, and orders
-- each second's threads by `updated_at` as it goes (an incremental sort): the same order as
-- before, `updated_at DESC, thread_id DESC`. Threads keep a fifth of each new page free for
-- the new versions of their rows.
--
-- Catalog changes only (a nullable column, a storage setting, a function and a trigger): no
-- existing row is read or rewritten. The instances that migrate then give the existing threads
-- their second, a thousand a transaction, build `threads_by_active_second` concurrently (writes
-- go on) and drop `threads_by_activity` (see `activity.rs`); until the index is built the
-- version reads as pending. An instance of version 12 still running lists a tenant's threads
-- with a sort once the old index is gone (slower for a tenant of many threads, the same
-- answers), and writes as before.

ALTER TABLE threads ADD COLUMN active_second BIGINT;   -- updated_at / 1000000 (NULL: not yet given)
ALTER TABLE threads SET (fillfactor = 80);

CREATE FUNCTION persist_thread_active_second() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.active_second := NEW.updated_at / 1000000;
    RETURN NEW;
END $$;

-- Called only when the second changes (the condition is checked without calling it).
CREATE TRIGGER persist_thread_active_second BEFORE INSERT OR UPDATE OF updated_at, active_second ON threads
FOR EACH ROW WHEN (NEW.active_second IS DISTINCT FROM NEW.updated_at / 1000000)
EXECUTE FUNCTION persist_thread_active_second();
