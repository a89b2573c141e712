-- persist schema, version 6: a reservation is stranded when nobody wrote to it for a while
-- (its `updated_at`), not when it was created long ago: a long stream keeps updating it.
DROP INDEX IF EXISTS messages_reserved_by_age;
CREATE INDEX messages_reserved_by_activity ON messages (updated_at) WHERE status = 'reserved';
