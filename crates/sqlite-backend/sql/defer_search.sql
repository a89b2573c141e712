-- Format 4 (schema version 24): the search index kept later (see migrations/0024). Run in the
-- transaction that raises the store's format to 4, once its triggers are on `persist_messages`
-- (a store finished, or made by this build). A message inserted above
-- `persist_search_state.indexed` (every row so far is indexed by the triggers replaced here)
-- waits by its row alone: its insert writes nothing more. At or below it (a text changed, a
-- reservation finished, a row numbered below it), its row is listed in
-- `persist_search_pending`. The index takes what waits in one statement (`search::FLUSH`; the
-- insert that takes rows 128 past `indexed` runs the same). A
-- change or removal of a message that waits leaves nothing in the index to take out; of one
-- indexed, its old text leaves the index (FTS5's `delete`, read through the view while the row
-- still holds it).

DROP TRIGGER persist_search_inserted;
DROP TRIGGER persist_search_replaced;
DROP TRIGGER persist_search_updated;
DROP TRIGGER persist_search_deleted;

UPDATE persist_search_state SET indexed = (SELECT coalesce(max(row), 0) FROM persist_messages);

-- One trigger, so its statements run in this order: a row numbered at or below `indexed` is
-- listed; rows 128 past `indexed`, the write that took them there indexes all that wait, in
-- one segment (otherwise an insert fires nothing here).
CREATE TRIGGER persist_search_inserted AFTER INSERT ON persist_messages
WHEN (SELECT enabled AND (NEW.row <= indexed OR NEW.row - indexed >= 128) FROM persist_search_state)
BEGIN
    INSERT OR IGNORE INTO persist_search_pending (row)
    SELECT NEW.row FROM persist_search_state WHERE NEW.status IS NOT 'reserved' AND NEW.row <= indexed;
    INSERT INTO persist_search (rowid, body)
    SELECT t.message_rowid, t.body FROM persist_search_texts t
     WHERE t.message_rowid > (SELECT indexed FROM persist_search_state) AND t.body IS NOT NULL
       AND (SELECT NEW.row - indexed >= 128 FROM persist_search_state)
    UNION ALL
    SELECT t.message_rowid, t.body FROM persist_search_pending p CROSS JOIN persist_search_texts t ON t.message_rowid = p.row
     WHERE p.row <= (SELECT indexed FROM persist_search_state) AND t.body IS NOT NULL
       AND (SELECT NEW.row - indexed >= 128 FROM persist_search_state);
    DELETE FROM persist_search_pending WHERE (SELECT NEW.row - indexed >= 128 FROM persist_search_state);
    UPDATE persist_search_state SET indexed = (SELECT coalesce(max(row), indexed) FROM persist_messages)
     WHERE NEW.row - indexed >= 128;
END;

CREATE TRIGGER persist_search_replaced BEFORE UPDATE OF content, status ON persist_messages
WHEN OLD.status IS NOT 'reserved' AND (SELECT enabled AND OLD.row <= indexed FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts
     WHERE message_rowid = OLD.row AND body IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM persist_search_pending WHERE row = OLD.row);
    DELETE FROM persist_search_pending WHERE row = OLD.row;
END;

CREATE TRIGGER persist_search_updated AFTER UPDATE OF content, status ON persist_messages
WHEN NEW.status IS NOT 'reserved' AND (SELECT enabled AND NEW.row <= indexed FROM persist_search_state)
BEGIN
    INSERT OR IGNORE INTO persist_search_pending (row) VALUES (NEW.row);
END;

CREATE TRIGGER persist_search_deleted BEFORE DELETE ON persist_messages
WHEN OLD.status IS NOT 'reserved' AND (SELECT enabled AND OLD.row <= indexed FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts
     WHERE message_rowid = OLD.row AND body IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM persist_search_pending WHERE row = OLD.row);
    DELETE FROM persist_search_pending WHERE row = OLD.row;
END;
