-- persist schema, version 3: find reservations stranded by streams that never finished.
CREATE INDEX messages_reserved_by_age ON messages (created_at) WHERE status = 'reserved';
