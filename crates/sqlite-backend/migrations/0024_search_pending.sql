-- persist schema, version 24: messages waiting for the search index. FTS5 writes a segment of
-- its own on every commit that adds to `persist_search` (about ten pages for one short
-- message), so a lone caller whose every add is its own transaction paid more for the index
-- than for the message. From format 4 on (see `sql/defer_search.sql`, installed when the
-- store is finished, or as a new store is made: an instance of an earlier version, which reads
-- the index alone, may still run a store migrated here), a message written is not indexed in
-- its own transaction: the messages whose `row` is above `persist_search_state.indexed` wait,
-- and so do those at or below it whose text changed (or that a write numbered below it), listed
-- in `persist_search_pending` (their rows, not their texts). They are indexed together, in one
-- segment, once `row` passes `indexed` by 128, when the writer has been idle for a second,
-- when the handle closes, and before any search reads the index (a search that finds messages
-- waiting has its handle's writer index them first: what is acknowledged is searchable, from
-- any handle and any process); `indexed` then moves to the highest row. A message removed or
-- changed while it waits leaves nothing in the index to take out (its words never entered it);
-- one already indexed leaves it as before. Turning the index off or on empties what waits.
-- `indexed` is NULL before format 4: nothing waits.
--
-- A table and a column are added; no existing row is read or rewritten.

CREATE TABLE persist_search_pending (
    row INTEGER PRIMARY KEY                         -- persist_messages.row, at or below `indexed`
) STRICT;

ALTER TABLE persist_search_state ADD COLUMN indexed INTEGER;  -- rows above it wait; NULL: none
