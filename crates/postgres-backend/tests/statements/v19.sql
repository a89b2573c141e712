BEGIN; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off; SELECT pg_advisory_xact_lock(1885696627, hashtext(current_schema())); WITH pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM persist_feed WHERE position IS NULL ORDER BY id LIMIT 10000), total AS (SELECT count(*) AS n FROM pending), head AS (UPDATE persist_feed_state SET head = head + (SELECT n FROM total) WHERE (SELECT n FROM total) > 0 RETURNING head - (SELECT n FROM total) AS base), done AS (UPDATE persist_feed f SET position = head.base + pending.n FROM pending, head WHERE f.id = pending.id RETURNING f.position) SELECT count(*) FROM done; COMMIT
-- next statement
BEGIN; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off; SELECT pg_advisory_xact_lock(1885696627, hashtext(current_schema())); WITH pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM persist_feed WHERE position IS NULL ORDER BY id LIMIT 10000), total AS (SELECT count(*) AS n FROM pending), head AS (UPDATE persist_feed_state SET head = head + (SELECT n FROM total) WHERE (SELECT n FROM total) > 0 RETURNING head - (SELECT n FROM total) AS base), done AS (UPDATE persist_feed f SET position = head.base + pending.n FROM pending, head WHERE f.id = pending.id RETURNING f.position) SELECT count(*) FROM done; COMMIT; SELECT pg_notify('persist_feed', 'persist_pool_5131_01a221ddac9a777b964154a5d9c4d467')
-- next statement
BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL session_replication_role = replica; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."leases"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."messages"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_embedding_models"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_embeddings"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_feed"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_feed_state"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_format"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_records"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_search_state"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_spent_keys"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_values"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_working_memory"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."session_bindings"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."summaries"; DELETE FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."threads"; ALTER SEQUENCE "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_feed_id_seq" RESTART; INSERT INTO "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_feed_state" SELECT * FROM json_populate_recordset(NULL::"persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_feed_state", '[{"id":1,"head":0,"trimmed":0,"enabled":true}]'::json); INSERT INTO "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_format" SELECT * FROM json_populate_recordset(NULL::"persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_format", '[{"id":1,"level":1}]'::json); INSERT INTO "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_search_state" SELECT * FROM json_populate_recordset(NULL::"persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"."persist_search_state", '[{"id":1,"enabled":true,"config":"simple"}]'::json); COMMIT;
-- next statement
COMMIT
-- next statement
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_search ON messages USING gin (persist_search_vector('3748'::regconfig, content)) WHERE status <> 'reserved'
-- next statement
CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (persist_search_vector('3748'::regconfig, content)) WHERE status <> 'reserved'
-- next statement
CREATE INDEX IF NOT EXISTS threads_by_active_second ON threads (tenant, active_second DESC, thread_id DESC) WHERE deleted_at IS NULL
-- next statement
CREATE SCHEMA IF NOT EXISTS "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"
-- next statement
CREATE SCHEMA IF NOT EXISTS "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"
-- next statement
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
-- next statement
DELETE FROM leases WHERE tenant = $1 AND thread_id = $2
-- next statement
DELETE FROM leases WHERE tenant = $1 AND thread_id = $2 AND name = $3 AND (holder = $4 OR expires_at <= $5)
-- next statement
DELETE FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq <= $3 AND seq <> $4 RETURNING seq, message_id
-- next statement
DELETE FROM messages WHERE tenant = $2 AND thread_id = $1 AND seq > $3 RETURNING seq, message_id
-- next statement
DELETE FROM messages WHERE tenant = $2 AND thread_id = $1 RETURNING seq, message_id
-- next statement
DELETE FROM persist_records WHERE tenant = $1 AND expires_at IS NOT NULL AND expires_at <= $2
-- next statement
DELETE FROM persist_records WHERE tenant = $1 AND space = $2 AND key = $3
-- next statement
DELETE FROM persist_records WHERE tenant = $1 AND space >= $2 AND starts_with(space, $2)
-- next statement
DELETE FROM persist_spent_keys WHERE tenant = $1 AND thread_id = $2
-- next statement
DELETE FROM persist_spent_keys WHERE tenant = $1 AND thread_id = $2 AND forget_at <= $3
-- next statement
DELETE FROM session_bindings WHERE tenant = $2 AND thread_id = $1
-- next statement
DELETE FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq < $3
-- next statement
DELETE FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq > $3
-- next statement
DELETE FROM threads WHERE tenant = $3 AND thread_id = $1 AND $2::bigint IS NOT NULL
-- next statement
DROP INDEX CONCURRENTLY IF EXISTS threads_by_activity
-- next statement
INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time )
    VALUES ( $1, $2, TRUE, $3, -1 )
-- next statement
INSERT INTO leases AS l (tenant, thread_id, name, holder, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, thread_id, name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE l.holder = excluded.holder OR l.expires_at <= $6 RETURNING holder, expires_at
-- next statement
INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, content_form, metadata, status, version, idempotency_key, created_at, updated_at, parent_seq) SELECT $1, $2, u.id, u.seq, u.role, CASE WHEN u.text_block AND (SELECT level FROM persist_format) >= 1 THEN u.content::jsonb WHEN u.text_block THEN jsonb_build_array(jsonb_build_object('text', u.content::jsonb, 'type', 'text')) ELSE u.content::jsonb END, CASE WHEN u.text_block AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, u.metadata::jsonb, u.status, u.version, u.key, u.created_at, u.updated_at, u.parent FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::boolean[]) AS u(id, seq, role, content, metadata, status, version, key, created_at, updated_at, parent, text_block)
-- next statement
INSERT INTO persist_embedding_models (tenant, model, dims) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
-- next statement
INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) SELECT $1, $2, v.message_id, v.model, v.vector FROM unnest($3::text[], $4::text[], $5::bytea[]) AS v(message_id, model, vector)
-- next statement
INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, thread_id, message_id, model) DO UPDATE SET vector = excluded.vector
-- next statement
INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version) SELECT $1, $2, 'embed', $3, $4, $5 FROM persist_feed_state WHERE enabled
-- next statement
INSERT INTO persist_format AS f (id, level) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET level = EXCLUDED.level WHERE f.level < EXCLUDED.level
-- next statement
INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) SELECT $1, space, key, value, expires_at, $6 FROM unnest($2::text[], $3::text[], $4::bytea[], $5::int8[]) AS r (space, key, value, expires_at) ON CONFLICT (tenant, space, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at
-- next statement
INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) SELECT $1, space, key, value, expires_at, $6 FROM unnest($2::text[], $3::text[], $4::bytea[], $5::int8[]) AS r (space, key, value, expires_at) ON CONFLICT (tenant, space, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= $6
-- next statement
INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, space, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at
-- next statement
INSERT INTO persist_records (tenant, space, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, space, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at WHERE persist_records.expires_at IS NOT NULL AND persist_records.expires_at <= $6
-- next statement
INSERT INTO persist_spent_keys (tenant, thread_id, idempotency_key, message_id, seq, parent_seq, created_at, fingerprint, forget_at) SELECT $1, $2, k.key, k.message_id, k.seq, k.parent_seq, k.created_at, k.fingerprint, $9 + coalesce(current_setting('persist.key_retention', true)::bigint, 86400000000) FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[]) AS k(key, message_id, seq, parent_seq, created_at, fingerprint) ON CONFLICT (tenant, thread_id, idempotency_key) DO UPDATE SET message_id = EXCLUDED.message_id, seq = EXCLUDED.seq, parent_seq = EXCLUDED.parent_seq, created_at = EXCLUDED.created_at, fingerprint = EXCLUDED.fingerprint, forget_at = EXCLUDED.forget_at
-- next statement
INSERT INTO persist_working_memory (tenant, resource, document, version, created_at, updated_at) VALUES ($1, $2, '{}', 0, $3, $3) ON CONFLICT DO NOTHING
-- next statement
INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE SET session_id = excluded.session_id, provider = excluded.provider, runtime_id = excluded.runtime_id, work_dir = excluded.work_dir, state = excluded.state, created_at = excluded.created_at, updated_at = excluded.updated_at WHERE session_bindings.updated_at < excluded.updated_at
-- next statement
INSERT INTO summaries (tenant, thread_id, through_seq, from_seq, content, metadata, created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7) ON CONFLICT DO NOTHING
-- next statement
INSERT INTO threads (tenant, thread_id, title, metadata, version, created_at, updated_at, last_seq, message_count) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, 0) ON CONFLICT (tenant, thread_id) DO NOTHING RETURNING thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at
-- next statement
INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, active_leaf) VALUES ($1, $2, $3, $3, $4, $4, $4) ON CONFLICT (tenant, thread_id) DO UPDATE SET last_seq = th.last_seq + $4, message_count = th.message_count + $4, updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + $4, prev_leaf = th.active_leaf WHERE th.deleted_at IS NULL RETURNING th.last_seq - $4, th.prev_leaf
-- next statement
LISTEN "persist_feed"
-- next statement
RESET lock_timeout; RESET statement_timeout
-- next statement
ROLLBACK
-- next statement
SELECT (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('threads_by_active_second')), to_regclass('threads_by_activity') IS NOT NULL
-- next statement
SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 AND deleted_at IS NULL FOR UPDATE
-- next statement
SELECT 1 FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE
-- next statement
SELECT EXISTS (SELECT 1 FROM persist_feed WHERE position IS NULL)
-- next statement
SELECT NOT EXISTS (SELECT 1 FROM messages)
-- next statement
SELECT NOT EXISTS (SELECT 1 FROM threads)
-- next statement
SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('messages_search')
-- next statement
SELECT active_leaf FROM threads WHERE tenant = $1 AND thread_id = $2
-- next statement
SELECT agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at FROM session_bindings WHERE tenant = $1 AND thread_id = $2 ORDER BY agent_id COLLATE "C"
-- next statement
SELECT agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at FROM session_bindings WHERE tenant = $3 AND agent_id = $1 AND thread_id = $2
-- next statement
SELECT agent_id, updated_at FROM session_bindings WHERE tenant = $1 AND thread_id = $2
-- next statement
SELECT coalesce((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(format('%I.%I', $1::text, 'threads_by_active_second'))), false) AND to_regclass(format('%I.%I', $1::text, 'threads_by_activity')) IS NULL
-- next statement
SELECT coalesce(EXISTS (SELECT 1 FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = $3) OR $3 < (SELECT min(seq) FROM messages WHERE tenant = $1 AND thread_id = $2), false)
-- next statement
SELECT count(*) FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"._sqlx_migrations WHERE success
-- next statement
SELECT count(*) FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"._sqlx_migrations WHERE success
-- next statement
SELECT current_database()
-- next statement
SELECT current_setting('persist.key_retention', true)
-- next statement
SELECT deleted_at IS NOT NULL AS deleted, version FROM threads WHERE tenant = $2 AND thread_id = $1
-- next statement
SELECT deleted_at IS NOT NULL AS deleted, version, updated_at, active_leaf FROM threads WHERE tenant = $2 AND thread_id = $1 FOR UPDATE
-- next statement
SELECT deleted_at IS NOT NULL FROM threads WHERE tenant = $1 AND thread_id = $2 FOR SHARE
-- next statement
SELECT dims FROM persist_embedding_models WHERE tenant = $1 AND model = $2
-- next statement
SELECT document, version, created_at FROM persist_working_memory WHERE tenant = $1 AND resource = $2 FOR UPDATE
-- next statement
SELECT e.thread_id, e.message_id, m.seq, e.vector FROM persist_embeddings e JOIN messages m ON m.tenant = e.tenant AND m.thread_id = e.thread_id AND m.message_id = e.message_id JOIN threads t ON t.tenant = e.tenant AND t.thread_id = e.thread_id WHERE e.tenant = $2 AND e.model = $1 AND ($3::text IS NULL OR e.thread_id = $3) AND t.deleted_at IS NULL AND ($4::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value)) AND m.status <> 'reserved' AND ($8::boolean IS NULL OR (m.status = 'interrupted') = $8) AND ($5::bigint IS NULL OR m.created_at >= $5) AND ($6::bigint IS NULL OR m.created_at < $6) AND ($7::text[] IS NULL OR m.role = ANY ($7))
-- next statement
SELECT enabled, config::oid::bigint FROM persist_search_state
-- next statement
SELECT head FROM persist_feed_state
-- next statement
SELECT holder, expires_at FROM leases WHERE tenant = $1 AND thread_id = $2 AND name = $3 AND expires_at > $4
-- next statement
SELECT idempotency_key, message_id, seq, parent_seq, created_at, fingerprint, forget_at FROM persist_spent_keys WHERE tenant = $1 AND thread_id = $2 AND idempotency_key = ANY($3) AND forget_at > $4
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."leases" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."messages" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_embedding_models" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_embeddings" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_feed" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_feed_state" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_format" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_records" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_search_state" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_spent_keys" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_values" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."persist_working_memory" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."session_bindings" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."summaries" t
-- next statement
SELECT json_agg(t)::text FROM "persist_pool_5131_01a221ddad10767e92a4272f174e0d1a"."threads" t
-- next statement
SELECT m.seq, e.message_id, e.model, e.vector, m.role, m.status, m.created_at FROM persist_embeddings e JOIN messages m ON m.tenant = e.tenant AND m.thread_id = e.thread_id AND m.message_id = e.message_id WHERE e.tenant = $1 AND e.thread_id = $2 AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.tenant = e.tenant AND t.thread_id = e.thread_id AND t.deleted_at IS NOT NULL) AND ($3::bigint IS NULL OR (m.seq, e.model COLLATE "C") > ($3, $4::text)) ORDER BY m.seq, e.model COLLATE "C" LIMIT $5
-- next statement
SELECT m.status, m.version, m.seq FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2 AND m.message_id = $3 AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id AND t.deleted_at IS NULL) FOR SHARE OF m
-- next statement
SELECT m.tenant, m.thread_id, m.message_id, m.seq, m.parent_seq, m.role, m.content::text AS content, m.content_form, m.metadata::text AS metadata, m.status, m.version, m.idempotency_key, m.created_at, m.updated_at FROM messages m WHERE persist_search_vector('3748'::regconfig, m.content) @@ to_tsquery('3748'::regconfig, $1::text) AND m.status <> 'reserved' AND ($2::text IS NULL OR m.tenant = $2) AND ($3::text IS NULL OR m.thread_id = $3) AND ($4::bigint IS NULL OR m.created_at >= $4) AND ($5::bigint IS NULL OR m.created_at < $5) AND ($6::text[] IS NULL OR m.role = ANY ($6)) AND ($8::bigint IS NULL OR (m.created_at, m.thread_id COLLATE "C", m.tenant COLLATE "C", m.seq) < ($8, $9::text, $10::text, $11::bigint)) AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = m.tenant AND t.thread_id = m.thread_id AND t.deleted_at IS NULL AND ($7::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($7::jsonb) f WHERE (t.metadata -> f.key) IS DISTINCT FROM f.value))) ORDER BY m.created_at DESC, m.thread_id COLLATE "C" DESC, m.tenant COLLATE "C" DESC, m.seq DESC LIMIT $12
-- next statement
SELECT min(m.seq) FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) JOIN messages m ON m.tenant = $3 AND m.thread_id = $4 AND m.seq BETWEEN r.lo AND r.hi WHERE m.status = 'reserved'
-- next statement
SELECT min(seq) FROM messages WHERE tenant = $1 AND thread_id = $2
-- next statement
SELECT model FROM persist_embedding_models WHERE tenant = $1 ORDER BY model COLLATE "C"
-- next statement
SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1
-- next statement
SELECT pg_advisory_lock($1)
-- next statement
SELECT pg_advisory_unlock($1)
-- next statement
SELECT pg_advisory_unlock(hashtextextended($1 || ':' || current_schema(), 0))
-- next statement
SELECT pg_advisory_xact_lock(1885696627, hashtext(current_schema()))
-- next statement
SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(), 0))
-- next statement
SELECT seq FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = ANY($3)
-- next statement
SELECT seq FROM messages WHERE tenant = $2 AND thread_id = $1 AND seq = $3
-- next statement
SELECT seq, parent_seq FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = $3
-- next statement
SELECT seq, parent_seq FROM messages WHERE tenant = $1 AND thread_id = $2 AND parent_seq IS NOT NULL AND seq <= $3 ORDER BY seq DESC LIMIT $4
-- next statement
SELECT sequencename::text FROM pg_sequences WHERE schemaname = $1
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space = $3 AND $5::text[] IS NULL AND $6::text IS NULL AND $7::text IS NULL AND $8::text IS NULL ORDER BY key DESC, space DESC LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space = $3 AND $5::text[] IS NULL AND $6::text IS NULL AND $7::text IS NULL AND $8::text IS NULL ORDER BY key, space LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space = $3 AND $5::text[] IS NULL AND $6::text IS NULL AND (key, space) < ($7, $8) ORDER BY key DESC, space DESC LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space = $3 AND $5::text[] IS NULL AND $6::text IS NULL AND (key, space) > ($7, $8) ORDER BY key, space LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space = $3 AND key = ANY($5) AND $6::text IS NULL AND $7::text IS NULL AND $8::text IS NULL ORDER BY key, space LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space >= $3 AND space < $4 AND $5::text[] IS NULL AND $6::text IS NULL AND $7::text IS NULL AND $8::text IS NULL ORDER BY key DESC, space DESC LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space >= $3 AND space < $4 AND $5::text[] IS NULL AND $6::text IS NULL AND $7::text IS NULL AND $8::text IS NULL ORDER BY key, space LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space >= $3 AND space < $4 AND $5::text[] IS NULL AND $6::text IS NULL AND (key, space) < ($7, $8) ORDER BY key DESC, space DESC LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space >= $3 AND space < $4 AND $5::text[] IS NULL AND $6::text IS NULL AND (key, space) > ($7, $8) ORDER BY key, space LIMIT $9
-- next statement
SELECT space, key, value, expires_at, updated_at FROM persist_records WHERE tenant = $1 AND (expires_at IS NULL OR expires_at > $2) AND space >= $3 AND space < $4 AND $5::text[] IS NULL AND key < $6 AND $7::text IS NULL AND $8::text IS NULL ORDER BY key DESC, space DESC LIMIT $9
-- next statement
SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename
-- next statement
SELECT tenant, resource, document, version, created_at, updated_at FROM persist_working_memory WHERE tenant = $1 AND resource = $2 AND version > 0
-- next statement
SELECT tenant, resource, document, version, created_at, updated_at FROM persist_working_memory WHERE version > 0 AND ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR (tenant COLLATE "C", resource COLLATE "C") > ($2, $3::text)) ORDER BY tenant COLLATE "C", resource COLLATE "C" LIMIT $4
-- next statement
SELECT tenant, thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE status = 'reserved' AND created_at < $1 AND updated_at < $1 AND ($3 OR tenant = $4) ORDER BY updated_at LIMIT $2
-- next statement
SELECT thread_id, from_seq, through_seq, content::text AS content, metadata::text AS metadata, created_at FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq <= $3 ORDER BY through_seq DESC LIMIT $4
-- next statement
SELECT thread_id, from_seq, through_seq, content::text AS content, metadata::text AS metadata, created_at FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq = $3
-- next statement
SELECT thread_id, from_seq, through_seq, content::text AS content, metadata::text AS metadata, created_at FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq > $3 ORDER BY through_seq LIMIT $4
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND idempotency_key = ANY($3) UNION SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($4)
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND message_id = $3 AND ($4::bigint IS NULL OR version = $4)
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND seq <= $3 AND seq <> $4
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND seq > $3
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($3) UNION ALL SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = ANY($4) UNION ALL SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND idempotency_key IS NOT NULL AND idempotency_key = ANY($5)
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = coalesce($3, 0) + 1 AND parent_seq IS NULL UNION ALL SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $1 AND thread_id = $2 AND parent_seq = coalesce($3, 0) ORDER BY seq
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $3 AND thread_id = $1 AND idempotency_key = $2
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $3 AND thread_id = $1 AND message_id = $2
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $5 AND thread_id = $1 AND seq > $2 AND seq < $3 AND ($4 OR status <> 'reserved') AND ($7::text[] IS NULL OR role = ANY ($7)) ORDER BY seq ASC LIMIT $6
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages WHERE tenant = $5 AND thread_id = $1 AND seq > $2 AND seq < $3 AND ($4 OR status <> 'reserved') AND ($7::text[] IS NULL OR role = ANY ($7)) ORDER BY seq DESC LIMIT $6
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages m JOIN unnest($2::text[], $3::text[]) AS k(thread_id, message_id) USING (thread_id, message_id) WHERE m.tenant = $1
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM messages m WHERE tenant = $1 AND thread_id = $2 AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.tenant = $1 AND c.thread_id = $2 AND c.seq = m.seq + 1 AND c.parent_seq IS NULL) AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.tenant = $1 AND c.thread_id = $2 AND c.parent_seq = m.seq) ORDER BY seq
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) CROSS JOIN LATERAL (SELECT * FROM messages WHERE tenant = $3 AND thread_id = $4 AND seq BETWEEN r.lo AND r.hi OFFSET 0) m WHERE ($5 OR m.status <> 'reserved') AND ($7::text[] IS NULL OR m.role = ANY ($7)) ORDER BY m.seq ASC LIMIT $6
-- next statement
SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) CROSS JOIN LATERAL (SELECT * FROM messages WHERE tenant = $3 AND thread_id = $4 AND seq BETWEEN r.lo AND r.hi OFFSET 0) m WHERE ($5 OR m.status <> 'reserved') AND ($7::text[] IS NULL OR m.role = ANY ($7)) ORDER BY m.seq DESC LIMIT $6
-- next statement
SELECT thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at FROM threads WHERE deleted_at IS NULL AND ($1::text IS NULL OR TRUE) AND (updated_at, thread_id, tenant COLLATE "C") < ($2::bigint, $3::text, $6::text) AND NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f WHERE (threads.metadata -> f.key) IS DISTINCT FROM f.value) ORDER BY updated_at DESC, thread_id DESC, tenant COLLATE "C" DESC LIMIT $5
-- next statement
SELECT thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at FROM threads WHERE deleted_at IS NULL AND tenant = $1 AND ($6::text IS NULL OR TRUE) AND active_second <= $2::bigint / 1000000 AND (updated_at, thread_id) < ($2::bigint, $3::text) AND NOT EXISTS (SELECT 1 FROM jsonb_each($4::jsonb) f WHERE (threads.metadata -> f.key) IS DISTINCT FROM f.value) ORDER BY active_second DESC, updated_at DESC, thread_id DESC LIMIT $5
-- next statement
SELECT thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at FROM threads WHERE tenant = $1 AND thread_id = $2 FOR UPDATE
-- next statement
SELECT thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at FROM threads WHERE tenant = $2 AND thread_id = $1
-- next statement
SELECT through_seq FROM summaries WHERE tenant = $1 AND thread_id = $2
-- next statement
SELECT to_regclass($1)::text
-- next statement
SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1
-- next statement
SELECT version, checksum FROM _sqlx_migrations ORDER BY version
-- next statement
SELECT version, success, checksum FROM "persist_pool_5131_01a221ddac9a777b964154a5d9c4d467"._sqlx_migrations ORDER BY version
-- next statement
SET lock_timeout = 0; SET statement_timeout = 0
-- next statement
UNLISTEN *
-- next statement
UPDATE _sqlx_migrations
    SET execution_time = $1
    WHERE version = $2
-- next statement
UPDATE persist_feed_state SET head = CASE WHEN $1 AND NOT enabled THEN greatest(head, trimmed) + 1 ELSE head END, trimmed = CASE WHEN $1 AND NOT enabled THEN greatest(head, trimmed) + 1 ELSE trimmed END, enabled = $1
-- next statement
UPDATE persist_records SET expires_at = $4, updated_at = $5 WHERE tenant = $1 AND space = $2 AND key = $3 AND (expires_at IS NULL OR expires_at > $5)
-- next statement
UPDATE persist_working_memory SET document = $3, version = $4, created_at = $5, updated_at = $6 WHERE tenant = $1 AND resource = $2
-- next statement
UPDATE session_bindings SET state = $4, updated_at = $5 WHERE tenant = $6 AND agent_id = $1 AND thread_id = $2 AND ($3::text IS NULL OR (session_id = $3 AND state = 'active'))
-- next statement
UPDATE summaries SET content = $4::jsonb, metadata = $5::jsonb WHERE tenant = $1 AND thread_id = $2 AND through_seq = $3
-- next statement
UPDATE threads SET deleted_at = $2, updated_at = $2, message_count = 0, active_leaf = NULL WHERE tenant = $3 AND thread_id = $1
-- next statement
UPDATE threads SET deleted_at = $3 WHERE tenant = $2 AND thread_id = $1
-- next statement
UPDATE threads SET deleted_at = coalesce(deleted_at, $2), updated_at = $2, message_count = 0, active_leaf = NULL, title = NULL, metadata = '{}' WHERE tenant = $3 AND thread_id = $1
-- next statement
UPDATE threads SET message_count = message_count - $3, version = version + 1, updated_at = $4 WHERE tenant = $1 AND thread_id = $2
-- next statement
UPDATE threads SET message_count = message_count - $3, version = version + 1, updated_at = $4, active_leaf = coalesce($5, (SELECT max(m.seq) FROM messages m WHERE m.tenant = $2 AND m.thread_id = $1)) WHERE tenant = $2 AND thread_id = $1
-- next statement
UPDATE threads SET metadata = (metadata || $2::jsonb) - $3::text[], title = CASE WHEN $4 THEN $5::text ELSE title END, version = version + 1, updated_at = $6, active_leaf = CASE WHEN $10 THEN $9::bigint ELSE active_leaf END WHERE tenant = $7 AND thread_id = $1 AND deleted_at IS NULL AND ($8::bigint IS NULL OR version = $8) RETURNING thread_id, tenant, title, metadata::text AS metadata, version, created_at, updated_at, last_seq, message_count, active_leaf, deleted_at
-- next statement
UPDATE threads SET version = $3, updated_at = $4, last_seq = $5, message_count = $6, active_leaf = CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2 AND m.seq = $7) THEN $7 ELSE (SELECT max(m.seq) FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2) END WHERE tenant = $1 AND thread_id = $2 RETURNING active_leaf
-- next statement
WITH RECURSIVE under(seq) AS ( SELECT $3::bigint UNION ALL SELECT m.seq FROM under u JOIN messages m ON m.tenant = $1 AND m.thread_id = $2 AND ((m.seq = u.seq + 1 AND m.parent_seq IS NULL) OR m.parent_seq = u.seq)) SELECT max(seq) FROM under
-- next statement
WITH batch AS ( SELECT tenant, thread_id FROM threads WHERE (tenant, thread_id) > ($1, $2) ORDER BY tenant, thread_id LIMIT $3 FOR NO KEY UPDATE), given AS ( UPDATE threads t SET active_second = t.updated_at / 1000000 FROM batch WHERE t.tenant = batch.tenant AND t.thread_id = batch.thread_id AND t.active_second IS DISTINCT FROM t.updated_at / 1000000) SELECT tenant, thread_id FROM batch ORDER BY tenant DESC, thread_id DESC LIMIT 1
-- next statement
WITH d AS (DELETE FROM messages m WHERE m.tenant = $4 AND m.thread_id = $1 AND m.message_id = $2 AND ($3::bigint IS NULL OR m.version = $3) AND EXISTS (SELECT 1 FROM threads t WHERE t.tenant = $4 AND t.thread_id = $1 AND t.deleted_at IS NULL) RETURNING m.message_id, m.seq, CASE WHEN m.parent_seq IS NULL THEN nullif(m.seq - 1, 0) ELSE nullif(m.parent_seq, 0) END AS parent), older AS (SELECT EXISTS (SELECT 1 FROM messages o, d WHERE o.tenant = $4 AND o.thread_id = $1 AND o.seq < d.seq) AS has_older), next AS (UPDATE messages m SET parent_seq = coalesce(d.parent, 0) FROM d, older WHERE m.tenant = $4 AND m.thread_id = $1 AND m.seq = d.seq + 1 AND m.parent_seq IS NULL AND older.has_older), later AS (UPDATE messages m SET parent_seq = coalesce(d.parent, 0) FROM d, older WHERE m.tenant = $4 AND m.thread_id = $1 AND m.parent_seq = d.seq AND older.has_older), u AS (UPDATE threads t SET message_count = t.message_count - 1, updated_at = $5, active_leaf = CASE WHEN t.active_leaf <> d.seq THEN t.active_leaf ELSE coalesce((SELECT p.seq FROM messages p WHERE p.tenant = $4 AND p.thread_id = $1 AND p.seq = d.parent), (SELECT max(o.seq) FROM messages o WHERE o.tenant = $4 AND o.thread_id = $1 AND o.seq <> d.seq)) END FROM d WHERE t.tenant = $4 AND t.thread_id = $1) SELECT message_id FROM d
-- next statement
WITH i AS ( SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $10::boolean[], $11::boolean[], $12::text[], $13::int[], $14::bytea[]) AS i(thread_id, message_id, role, content, metadata, status, idempotency_key, tenant, root, text_block, model, dims, vector)), t AS ( INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, active_leaf, prev_leaf) SELECT i.tenant, i.thread_id, $9, $9, 1, 1, 1, NULL FROM i WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id AND m.message_id = i.message_id) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = i.tenant AND m.thread_id = i.thread_id AND m.idempotency_key = i.idempotency_key) AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = i.tenant AND s.thread_id = i.thread_id AND s.idempotency_key = i.idempotency_key AND s.forget_at > $9) AND (i.model IS NULL OR EXISTS (SELECT 1 FROM persist_embedding_models r WHERE r.tenant = i.tenant AND r.model = i.model AND r.dims = i.dims)) ORDER BY i.tenant COLLATE "C", i.thread_id COLLATE "C" ON CONFLICT (tenant, thread_id) DO UPDATE SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + 1, prev_leaf = th.active_leaf WHERE th.deleted_at IS NULL RETURNING th.tenant, th.thread_id, th.last_seq, th.prev_leaf), m AS ( INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, created_at, updated_at, content_form, parent_seq) SELECT i.tenant, i.thread_id, i.message_id, t.last_seq, i.role, CASE WHEN i.text_block AND (SELECT level FROM persist_format) >= 1 THEN i.content::jsonb WHEN i.text_block THEN jsonb_build_array(jsonb_build_object('text', i.content::jsonb, 'type', 'text')) ELSE i.content::jsonb END, i.metadata::jsonb, i.status, 1, i.idempotency_key, $9, $9, CASE WHEN i.text_block AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, CASE WHEN i.root THEN CASE WHEN t.last_seq > 1 THEN 0 END ELSE CASE WHEN t.last_seq = 1 OR t.prev_leaf = t.last_seq - 1 THEN NULL ELSE coalesce(t.prev_leaf, 0) END END FROM i JOIN t ON t.tenant = i.tenant AND t.thread_id = i.thread_id RETURNING *), e AS ( INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) SELECT m.tenant, m.thread_id, m.message_id, i.model, i.vector FROM m JOIN i ON i.tenant = m.tenant AND i.thread_id = m.thread_id WHERE i.model IS NOT NULL) SELECT tenant, thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH ins AS (INSERT INTO persist_values (tenant, name, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING value) SELECT value FROM ins UNION ALL SELECT value FROM persist_values WHERE tenant = $1 AND name = $2 LIMIT 1
-- next statement
WITH kept AS ( SELECT coalesce( (SELECT max(id) FROM persist_feed WHERE position IS NULL AND tenant = $2 AND thread_id = $1 AND message_id IS NULL AND removed = 'thread'), (SELECT id FROM persist_feed WHERE position IS NOT NULL AND tenant = $2 AND thread_id = $1 AND message_id IS NULL AND removed = 'thread' ORDER BY position DESC LIMIT 1)) AS id), numbered AS (DELETE FROM persist_feed WHERE tenant = $2 AND thread_id = $1 AND position IS NOT NULL AND id IS DISTINCT FROM (SELECT id FROM kept)) DELETE FROM persist_feed WHERE position IS NULL AND tenant = $2 AND thread_id = $1 AND id IS DISTINCT FROM (SELECT id FROM kept)
-- next statement
WITH p AS (SELECT seq FROM messages WHERE tenant = $9 AND thread_id = $1 AND message_id = $10), t AS ( UPDATE threads th SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = $8, active_leaf = th.last_seq + 1, prev_leaf = p.seq FROM p WHERE th.tenant = $9 AND th.thread_id = $1 AND th.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.message_id = $2) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.idempotency_key = $7) AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = $9 AND s.thread_id = $1 AND s.idempotency_key = $7 AND s.forget_at > $8) RETURNING th.last_seq, th.prev_leaf), m AS ( INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, created_at, updated_at, content_form, parent_seq) SELECT $9, $1, $2, t.last_seq, $3, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN $4::jsonb WHEN $11 THEN jsonb_build_array(jsonb_build_object('text', $4::jsonb, 'type', 'text')) ELSE $4::jsonb END, $5::jsonb, $6, 1, $7, $8, $8, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, CASE WHEN t.last_seq = 1 OR t.prev_leaf = t.last_seq - 1 THEN NULL ELSE coalesce(t.prev_leaf, 0) END FROM t RETURNING *) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH p AS (SELECT seq FROM messages WHERE tenant = $9 AND thread_id = $1 AND message_id = $10), t AS ( UPDATE threads th SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = $8, active_leaf = th.last_seq + 1, prev_leaf = p.seq FROM p WHERE th.tenant = $9 AND th.thread_id = $1 AND th.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.message_id = $2) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.idempotency_key = $7) AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = $9 AND s.thread_id = $1 AND s.idempotency_key = $7 AND s.forget_at > $8) RETURNING th.last_seq, th.prev_leaf), m AS ( INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, created_at, updated_at, content_form, parent_seq) SELECT $9, $1, $2, t.last_seq, $3, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN $4::jsonb WHEN $11 THEN jsonb_build_array(jsonb_build_object('text', $4::jsonb, 'type', 'text')) ELSE $4::jsonb END, $5::jsonb, $6, 1, $7, $8, $8, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, CASE WHEN t.last_seq = 1 OR t.prev_leaf = t.last_seq - 1 THEN NULL ELSE coalesce(t.prev_leaf, 0) END FROM t RETURNING *), e AS (INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) SELECT tenant, thread_id, message_id, $12, $13 FROM m) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH s AS (SELECT head, trimmed, enabled FROM persist_feed_state) SELECT s.head, s.trimmed, s.enabled, f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, f.version, f.removed, f.at, f.status, f.delta, f.parent, f.resource FROM s LEFT JOIN LATERAL (SELECT * FROM persist_feed WHERE $1::text IS NOT NULL AND $2::text IS NULL AND position > $3 ORDER BY position LIMIT $4) f ON true
-- next statement
WITH s AS (SELECT head, trimmed, enabled FROM persist_feed_state) SELECT s.head, s.trimmed, s.enabled, f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, f.version, f.removed, f.at, f.status, f.delta, f.parent, f.resource FROM s LEFT JOIN LATERAL (SELECT * FROM persist_feed WHERE resource IS NOT NULL AND tenant = $1 AND resource = $2 AND position > $3 ORDER BY position LIMIT $4) f ON true
-- next statement
WITH s AS (SELECT head, trimmed, enabled FROM persist_feed_state) SELECT s.head, s.trimmed, s.enabled, f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, f.version, f.removed, f.at, f.status, f.delta, f.parent, f.resource FROM s LEFT JOIN LATERAL (SELECT * FROM persist_feed WHERE tenant = $1 AND $2::text IS NULL AND position > $3 ORDER BY position LIMIT $4) f ON true
-- next statement
WITH s AS (SELECT head, trimmed, enabled FROM persist_feed_state) SELECT s.head, s.trimmed, s.enabled, f.position, f.tenant, f.thread_id, f.op, f.message_id, f.seq, f.version, f.removed, f.at, f.status, f.delta, f.parent, f.resource FROM s LEFT JOIN LATERAL (SELECT * FROM persist_feed WHERE tenant = $1 AND thread_id = $2 AND position > $3 ORDER BY position LIMIT $4) f ON true
-- next statement
WITH t AS ( INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, active_leaf) VALUES ($9, $1, $8, $8, 1, 1, 1) ON CONFLICT (tenant, thread_id) DO UPDATE SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + 1, prev_leaf = th.active_leaf WHERE th.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.message_id = $2) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.idempotency_key = $7) AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = $9 AND s.thread_id = $1 AND s.idempotency_key = $7 AND s.forget_at > $8) RETURNING th.last_seq, th.prev_leaf), m AS ( INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, created_at, updated_at, content_form, parent_seq) SELECT $9, $1, $2, t.last_seq, $3, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN $4::jsonb WHEN $11 THEN jsonb_build_array(jsonb_build_object('text', $4::jsonb, 'type', 'text')) ELSE $4::jsonb END, $5::jsonb, $6, 1, $7, $8, $8, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, CASE WHEN $10 THEN CASE WHEN t.last_seq > 1 THEN 0 END ELSE CASE WHEN t.last_seq = 1 OR t.prev_leaf = t.last_seq - 1 THEN NULL ELSE coalesce(t.prev_leaf, 0) END END FROM t RETURNING *) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH t AS ( INSERT INTO threads AS th (tenant, thread_id, created_at, updated_at, last_seq, message_count, active_leaf) VALUES ($9, $1, $8, $8, 1, 1, 1) ON CONFLICT (tenant, thread_id) DO UPDATE SET last_seq = th.last_seq + 1, message_count = th.message_count + 1, updated_at = EXCLUDED.updated_at, active_leaf = th.last_seq + 1, prev_leaf = th.active_leaf WHERE th.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.message_id = $2) AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant = $9 AND m.thread_id = $1 AND m.idempotency_key = $7) AND NOT EXISTS (SELECT 1 FROM persist_spent_keys s WHERE s.tenant = $9 AND s.thread_id = $1 AND s.idempotency_key = $7 AND s.forget_at > $8) RETURNING th.last_seq, th.prev_leaf), m AS ( INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, created_at, updated_at, content_form, parent_seq) SELECT $9, $1, $2, t.last_seq, $3, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN $4::jsonb WHEN $11 THEN jsonb_build_array(jsonb_build_object('text', $4::jsonb, 'type', 'text')) ELSE $4::jsonb END, $5::jsonb, $6, 1, $7, $8, $8, CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, CASE WHEN $10 THEN CASE WHEN t.last_seq > 1 THEN 0 END ELSE CASE WHEN t.last_seq = 1 OR t.prev_leaf = t.last_seq - 1 THEN NULL ELSE coalesce(t.prev_leaf, 0) END END FROM t RETURNING *), e AS (INSERT INTO persist_embeddings (tenant, thread_id, message_id, model, vector) SELECT tenant, thread_id, message_id, $12, $13 FROM m) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH t AS (SELECT deleted_at FROM threads WHERE tenant = $8 AND thread_id = $2 FOR SHARE) INSERT INTO session_bindings (tenant, agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at) SELECT $8, $1, $2, $3, $4, $5::text, $6::text, 'active', $7, $7 WHERE NOT EXISTS (SELECT 1 FROM t WHERE deleted_at IS NOT NULL) ON CONFLICT (tenant, agent_id, thread_id) DO UPDATE SET session_id = EXCLUDED.session_id, provider = EXCLUDED.provider, runtime_id = EXCLUDED.runtime_id, work_dir = EXCLUDED.work_dir, state = 'active', updated_at = EXCLUDED.updated_at RETURNING agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, created_at, updated_at
-- next statement
WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $7 AND thread_id = $1 AND deleted_at IS NULL FOR UPDATE), m AS (UPDATE messages SET content = CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN $3::jsonb WHEN $11 THEN jsonb_build_array(jsonb_build_object('text', $3::jsonb, 'type', 'text')) ELSE $3::jsonb END, content_form = CASE WHEN $11 AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END, status = COALESCE($4, status), version = version + 1, updated_at = $5, delta = $10, delta_version = CASE WHEN $10::text IS NULL THEN NULL ELSE version + 1 END WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND message_id = $2 AND ($6::bigint IS NULL OR version = $6) AND (status = 'reserved' OR (status = 'complete' AND $8) OR (status = 'interrupted' AND $9)) RETURNING *), u AS (UPDATE threads SET updated_at = $5 WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH t AS (SELECT tenant, thread_id FROM threads WHERE tenant = $8 AND thread_id = $1 AND deleted_at IS NULL FOR UPDATE), m AS (UPDATE messages SET metadata = (metadata || $3::jsonb) - $4::text[], role = COALESCE($5::text, role), version = version + 1, updated_at = $6, delta = NULL, delta_version = NULL WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM t) AND message_id = $2 AND ($7::bigint IS NULL OR version = $7) RETURNING *), u AS (UPDATE threads SET updated_at = $6 WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) SELECT thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
-- next statement
WITH u AS ( SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $11::text[], $12::text[], $13::boolean[]) AS u(tenant, thread_id, message_id, content, status, expected, set, removed, role, over, delta, text_block)), t AS ( SELECT th.tenant, th.thread_id FROM threads th WHERE (th.tenant, th.thread_id) IN (SELECT tenant, thread_id FROM u) AND th.deleted_at IS NULL ORDER BY th.tenant COLLATE "C", th.thread_id COLLATE "C" FOR UPDATE), m AS ( UPDATE messages ms SET content = COALESCE(CASE WHEN u.text_block AND (SELECT level FROM persist_format) >= 1 THEN u.content::jsonb WHEN u.text_block THEN jsonb_build_array(jsonb_build_object('text', u.content::jsonb, 'type', 'text')) ELSE u.content::jsonb END, ms.content), content_form = CASE WHEN u.content IS NULL THEN ms.content_form ELSE CASE WHEN u.text_block AND (SELECT level FROM persist_format) >= 1 THEN 1::smallint END END, status = COALESCE(u.status, ms.status), metadata = (ms.metadata || u.set::jsonb) - ARRAY(SELECT jsonb_array_elements_text(u.removed::jsonb)), role = COALESCE(u.role, ms.role), version = ms.version + 1, updated_at = $10, delta = u.delta, delta_version = CASE WHEN u.delta IS NULL THEN NULL ELSE ms.version + 1 END FROM u WHERE ms.tenant = u.tenant AND ms.thread_id = u.thread_id AND ms.message_id = u.message_id AND (u.expected IS NULL OR ms.version = u.expected) AND ms.status = ANY (string_to_array(u.over, ',')) AND (ms.tenant, ms.thread_id) IN (SELECT tenant, thread_id FROM t) RETURNING ms.*), x AS (UPDATE threads SET updated_at = $10 WHERE (tenant, thread_id) IN (SELECT tenant, thread_id FROM m)) SELECT tenant, thread_id, message_id, seq, parent_seq, role, content::text AS content, content_form, metadata::text AS metadata, status, version, idempotency_key, created_at, updated_at FROM m
