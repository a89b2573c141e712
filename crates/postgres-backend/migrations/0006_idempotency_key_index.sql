-- persist schema, version 6: the idempotency key's index holds keyed messages only.
--
-- Version 2 made the key unique per thread with `UNIQUE (tenant, thread_id, idempotency_key)`,
-- an index holding every message, keyed or not. Its first two columns are the thread's, so the
-- planner could (and, with the statistics of a young table, did) serve "does this thread hold
-- message M?" with it, reading every message of the thread and filtering on the id: an add cost
-- more the longer its thread. Holding only keyed messages (`WHERE idempotency_key IS NOT NULL`),
-- the index can serve only lookups by key, and a lookup by id takes the primary key. Keys stay
-- unique per thread as before (the constraint already let any number of messages have none).
--
-- The index is built inside the migration's transaction: writes to `messages` wait for it.

ALTER TABLE messages DROP CONSTRAINT messages_tenant_thread_id_idempotency_key_key;

CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (tenant, thread_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
