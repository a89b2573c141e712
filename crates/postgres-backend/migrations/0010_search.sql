-- persist schema for PostgreSQL, version 10: full-text search (see `persist::search`).
--
-- `persist_search_vector(content)` is the `tsvector` of a message's text: the `text` of every
-- block of type `text` and the `output` of every `tool_result` block (a string, or the `text` of
-- the `text` blocks of an array), in order, joined by line breaks, cut at 65,536 characters,
-- with punctuation and white space (as the database's locale classifies them) turned into
-- spaces before the text search parser reads it, so that `e-mail`, `example.com` or `a_b` are
-- words apart as on every backend. `persist_search_config()` names the text search
-- configuration (`simple`: words lowercased, no stemming, no stop words); an instance
-- connecting with another one (`search_config`) replaces it and rebuilds the index.
--
-- The index itself, `messages_search` (GIN over the vector of every message not `reserved`), is
-- built by each instance that connects with the index on, `CREATE INDEX CONCURRENTLY IF NOT
-- EXISTS` outside any transaction: writes go on while it is built, and this migration takes no
-- lock on `messages` (it creates two functions).

CREATE FUNCTION persist_search_config() RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'pg_catalog.simple'::regconfig $$;

CREATE FUNCTION persist_search_vector(content jsonb) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
SELECT to_tsvector(persist_search_config(), regexp_replace(left(
    CASE jsonb_typeof(content)
        WHEN 'string' THEN content #>> '{}'
        WHEN 'array' THEN (
            SELECT string_agg(x, E'\n' ORDER BY k, j)
              FROM (SELECT b.k, 0::bigint AS j,
                           CASE WHEN jsonb_typeof(b.v) <> 'object' THEN NULL
                                WHEN b.v ->> 'type' = 'text' AND jsonb_typeof(b.v -> 'text') = 'string'
                                    THEN b.v ->> 'text'
                                WHEN b.v ->> 'type' = 'tool_result' AND jsonb_typeof(b.v -> 'output') = 'string'
                                    THEN b.v ->> 'output'
                           END AS x
                      FROM jsonb_array_elements(content) WITH ORDINALITY AS b(v, k)
                    UNION ALL
                    SELECT b.k, o.j, o.v ->> 'text'
                      FROM jsonb_array_elements(content) WITH ORDINALITY AS b(v, k)
                     CROSS JOIN LATERAL jsonb_array_elements(
                               CASE WHEN jsonb_typeof(b.v) = 'object' AND b.v ->> 'type' = 'tool_result'
                                         AND jsonb_typeof(b.v -> 'output') = 'array'
                                    THEN b.v -> 'output' ELSE '[]'::jsonb END) WITH ORDINALITY AS o(v, j)
                     WHERE jsonb_typeof(o.v) = 'object' AND o.v ->> 'type' = 'text'
                       AND jsonb_typeof(o.v -> 'text') = 'string') AS blocks
             WHERE x IS NOT NULL)
    END, 65536), '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'))
$$;
