-- persist schema for PostgreSQL, version 10: full-text search (see `persist::search`).
--
-- `persist_search_vector(config, content)` is the `tsvector` of a message's text: the `text` of
-- every block of type `text` and the `output` of every `tool_result` block (a string, or the
-- `text` of the `text` blocks of an array), in order, joined by line breaks, cut at 65,536
-- characters, with punctuation and white space (as the database's locale classifies them)
-- turned into spaces before the text search parser reads it, so that `e-mail`, `example.com` or
-- `a_b` are words apart as on every backend, read with the text search configuration `config`.
--
-- `persist_search_state` holds whether the index is kept and with which configuration (`simple`:
-- words lowercased, no stemming, no stop words). The index itself, `messages_search` (GIN over
-- the vector of every message not `reserved`, the configuration written out in its expression),
-- is built by instances that migrate as they connect, `CREATE INDEX CONCURRENTLY IF NOT EXISTS`
-- outside any transaction: writes go on while it is built, and this migration takes no lock on
-- `messages` (it creates a table and a function).

CREATE TABLE persist_search_state (
    id      INTEGER   PRIMARY KEY CHECK (id = 1),
    enabled BOOLEAN   NOT NULL,                     -- the index is kept (built by instances that migrate)
    config  REGCONFIG NOT NULL                      -- the text search configuration of the index and searches
);
INSERT INTO persist_search_state (id, enabled, config) VALUES (1, true, 'pg_catalog.simple');

-- Only built-in functions, named whatever the search path: no `SET search_path`, which would
-- cost every call a change of settings. PL/pgSQL walking the blocks with plain expressions (no
-- query): measured per single-row insert on this machine, an SQL function (its body planned
-- again by every statement that calls it) cost 196 µs, PL/pgSQL looping over a query 43 µs,
-- this 25 µs, `to_tsvector` of the text alone 20 µs, an insert without the index 5 µs.
CREATE FUNCTION persist_search_vector(config regconfig, content jsonb) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    block jsonb;
    output jsonb;
    part text;
    body text;
BEGIN
    CASE jsonb_typeof(content)
    WHEN 'string' THEN
        body := content #>> '{}';
    WHEN 'array' THEN
        FOR i IN 0 .. jsonb_array_length(content) - 1 LOOP
            block := content -> i;
            part := NULL;
            CONTINUE WHEN jsonb_typeof(block) <> 'object';
            IF block ->> 'type' = 'text' THEN
                IF jsonb_typeof(block -> 'text') = 'string' THEN
                    part := block ->> 'text';
                END IF;
            ELSIF block ->> 'type' = 'tool_result' THEN
                output := block -> 'output';
                IF jsonb_typeof(output) = 'string' THEN
                    part := output #>> '{}';
                ELSIF jsonb_typeof(output) = 'array' THEN
                    FOR j IN 0 .. jsonb_array_length(output) - 1 LOOP
                        IF jsonb_typeof(output -> j) = 'object' AND output -> j ->> 'type' = 'text'
                           AND jsonb_typeof(output -> j -> 'text') = 'string' THEN
                            part := CASE WHEN part IS NULL THEN output -> j ->> 'text'
                                         ELSE part || E'\n' || (output -> j ->> 'text') END;
                        END IF;
                    END LOOP;
                END IF;
            END IF;
            IF part IS NOT NULL THEN
                body := CASE WHEN body IS NULL THEN part ELSE body || E'\n' || part END;
            END IF;
        END LOOP;
    ELSE
        body := NULL;
    END CASE;
    RETURN to_tsvector(config, regexp_replace(left(body, 65536), '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'));
END
$$;
