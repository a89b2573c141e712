-- persist schema, version 14: full-text search. `persist_search` is an FTS5 index of every
-- message's text (see `persist::search`): contentless (it stores no copy of the text, only its
-- index), keyed by the message's rowid, tokenized by `unicode61` with diacritics kept, without
-- the sizes of each row FTS5 keeps for its ranking (`columnsize = 0`: persist ranks hits itself).
-- `secure-delete` makes a deleted message's words leave the index's pages at once (with the
-- writer's `secure_delete`, the file keeps no trace of a purged message's text).
--
-- What is indexed is the view `persist_search_texts`: the `text` of every block of type `text`
-- and the `output` of every `tool_result` block (a string, or the `text` of the `text` blocks of
-- an array), in order, joined by line breaks, cut at 65,536 characters; a message still
-- `reserved` is not indexed (written with what SQLite 3.9 reads, `json_extract` and a plain
-- `group_concat` over the blocks in their order, so older `sqlite3` shells still open the
-- file). The triggers keep the index in the transaction of each write that
-- inserts, changes or removes a message: the old text leaves it before a change (FTS5's
-- `delete` takes the text that was indexed, read back through the view while the row still
-- holds it), the new text enters after. `persist_search_state.enabled` turns them off (a
-- handle opened with the index off empties it; one opened with it on rebuilds it).
--
-- The existing messages are indexed here, in the migration's transaction, as `CREATE INDEX`
-- would (about a second per 100,000 messages on a laptop).

CREATE VIRTUAL TABLE persist_search USING fts5(
    body, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0'
);
INSERT INTO persist_search (persist_search, rank) VALUES ('secure-delete', 1);

CREATE TABLE persist_search_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    enabled INTEGER NOT NULL                        -- 1: the triggers keep the index
) STRICT;
INSERT INTO persist_search_state (id, enabled) VALUES (1, 1);

CREATE VIEW persist_search_texts (message_rowid, body) AS
SELECT m.rowid,
       CASE json_type(m.content)
           WHEN 'text' THEN substr(json_extract(m.content, '$'), 1, 65536)
           WHEN 'array' THEN (
               SELECT substr(group_concat(x, char(10)), 1, 65536)
                 FROM (SELECT CASE
                                  WHEN b.type <> 'object' THEN NULL
                                  WHEN json_extract(b.value, '$.type') = 'text'
                                       AND json_type(b.value, '$.text') = 'text'
                                      THEN json_extract(b.value, '$.text')
                                  WHEN json_extract(b.value, '$.type') IS NOT 'tool_result' THEN NULL
                                  WHEN json_type(b.value, '$.output') = 'text'
                                      THEN json_extract(b.value, '$.output')
                                  WHEN json_type(b.value, '$.output') = 'array'
                                      THEN (SELECT group_concat(json_extract(o.value, '$.text'), char(10))
                                              FROM json_each(b.value, '$.output') o
                                             WHERE o.type = 'object' AND json_extract(o.value, '$.type') = 'text'
                                               AND json_type(o.value, '$.text') = 'text')
                              END AS x
                         FROM json_each(m.content) b))
       END
  FROM messages m
 WHERE m.status <> 'reserved';

CREATE TRIGGER persist_search_inserted AFTER INSERT ON messages
WHEN NEW.status <> 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (rowid, body)
    SELECT message_rowid, body FROM persist_search_texts WHERE message_rowid = NEW.rowid AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_replaced BEFORE UPDATE OF content, status ON messages
WHEN OLD.status <> 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts WHERE message_rowid = OLD.rowid AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_updated AFTER UPDATE OF content, status ON messages
WHEN NEW.status <> 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (rowid, body)
    SELECT message_rowid, body FROM persist_search_texts WHERE message_rowid = NEW.rowid AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_deleted BEFORE DELETE ON messages
WHEN OLD.status <> 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts WHERE message_rowid = OLD.rowid AND body IS NOT NULL;
END;

INSERT INTO persist_search (rowid, body)
SELECT message_rowid, body FROM persist_search_texts WHERE body IS NOT NULL;
