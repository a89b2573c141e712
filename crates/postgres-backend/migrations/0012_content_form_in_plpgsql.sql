-- persist schema, version 12: version 11's two content functions in PL/pgSQL. As SQL functions
-- (which cannot be inlined: they set their `search_path`) each statement that called them planned
-- their bodies again on every execution: about 30 µs a call, three calls an insert, 0.84× the
-- single-caller adds of a statement without them. PL/pgSQL keeps its plans for the session:
-- about 5 µs a call. Same arguments, same answers; nothing else changes.

CREATE OR REPLACE FUNCTION persist_content_form(content jsonb) RETURNS smallint LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path FROM CURRENT AS $$
BEGIN
    IF jsonb_typeof(content -> 0 -> 'text') = 'string'
       AND content = jsonb_build_array(jsonb_build_object('text', content -> 0 -> 'text', 'type', 'text'))
       AND (SELECT level FROM persist_format) >= 1 THEN
        RETURN 1;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION persist_stored_content(content jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path FROM CURRENT AS $$
BEGIN
    IF persist_content_form(content) = 1 THEN
        RETURN content -> 0 -> 'text';
    END IF;
    RETURN content;
END $$;
