package pglock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dlockgo/dlock/lock"
)

// The objects the store uses, in the first schema of the connection's
// search_path.
//
// dlock_fence hands out fencing tokens. It must have CACHE 1: with a cache,
// sessions would draw tokens from private ranges and a later holder could get
// a smaller token.
//
// dlock_holders records, for each key id, the owner, token and backend of
// the last acquisition, and its namespace and key (columns added later, so
// nullable), so that [Backend.Inspect] can name the holder and
// [Backend.List] can list the keys. It is
// UNLOGGED: writing it costs no WAL and no commit flush, and its rows are
// worthless after a crash anyway (every session, and so every lock, is gone).
// A row is current only while pg_locks shows the advisory lock granted to the
// row's backend; release does not delete it.
const (
	migrateSQL = `
CREATE SEQUENCE IF NOT EXISTS dlock_fence AS bigint MINVALUE 1 CACHE 1;
CREATE UNLOGGED TABLE IF NOT EXISTS dlock_holders (
	key_id bigint PRIMARY KEY,
	owner  bytea  NOT NULL,
	token  bigint NOT NULL,
	pid    integer NOT NULL,
	ttl_ms bigint NOT NULL
);
ALTER TABLE dlock_holders ADD COLUMN IF NOT EXISTS ns bytea, ADD COLUMN IF NOT EXISTS key bytea;
CREATE TABLE IF NOT EXISTS dlock_once (
	ns         bytea   NOT NULL,
	key        bytea   NOT NULL,
	fence      bigint  NOT NULL,
	done       boolean NOT NULL,
	by_token   bigint  NOT NULL,
	expires_at timestamptz,
	PRIMARY KEY (ns, key)
);`

	checkSQL = `SELECT s.seqcache, to_regclass('dlock_holders') IS NOT NULL AND to_regclass('dlock_once') IS NOT NULL
FROM pg_sequence s WHERE s.seqrelid = to_regclass('dlock_fence')`

	// The acquire statements take the advisory lock and, only when it was
	// granted, draw the fencing token, in one statement and one round trip.
	// CASE evaluates its THEN branch only when the WHEN condition is true,
	// and after it; nextval is volatile, so the planner never evaluates it
	// ahead of time (PostgreSQL manual, "Expression Evaluation Rules").
	// A CTE that holds volatile functions is never inlined: it runs exactly
	// once. The refresh and health-check statements, and the acquire
	// statements of the slower modes, also return pg_backend_pid(), which
	// must be the backend the session was opened on (see ErrSessionMoved).
	// The advisory-mode acquire does not: the column cost 2–3% of a
	// loopback acquire+release, and the pooler it guards against is
	// refused by New's probe or caught by the next refresh or health check.

	// acquireSQL: $1 key id.
	acquireSQL = `SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('dlock_fence') END`

	// acquireEnforcedSQL also sets the session's idle_session_timeout to
	// the TTL when the lock was granted: $1 key id, $2 TTL in ms (text).
	acquireEnforcedSQL = `WITH g AS (
	SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('dlock_fence') END AS t
)
SELECT g.t, pg_backend_pid(),
	set_config('idle_session_timeout', CASE WHEN g.t IS NULL THEN '0' ELSE $2 END, false)
FROM g`

	// acquireRecordSQL also records the holder in dlock_holders (with the
	// namespace and the key, for List), and with EnforceTTL sets
	// idle_session_timeout ($3 is then the TTL, else 0): $1 key id, $2
	// owner, $3 TTL in ms, $4 namespace, $5 key.
	acquireRecordSQL = `WITH g AS (
	SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('dlock_fence') END AS t
), w AS (
	INSERT INTO dlock_holders AS h (key_id, owner, token, pid, ttl_ms, ns, key)
	SELECT $1, $2, g.t, pg_backend_pid(), $3, $4, $5 FROM g WHERE g.t IS NOT NULL
	ON CONFLICT (key_id) DO UPDATE
	SET owner = excluded.owner, token = excluded.token, pid = excluded.pid, ttl_ms = excluded.ttl_ms,
		ns = excluded.ns, key = excluded.key
)
SELECT g.t, pg_backend_pid(),
	set_config('idle_session_timeout', CASE WHEN g.t IS NULL THEN '0' ELSE $3::text END, false)
FROM g`

	// refreshSQL is the liveness check of an advisory-mode refresh: the
	// session answers, from the backend it was opened on. pingSQL is the
	// same for the health check.
	refreshSQL = `SELECT pg_backend_pid()`
	pingSQL    = `SELECT pg_backend_pid()`

	// refreshEnforcedSQL restarts the server's idle timer with the new
	// TTL: $1 TTL in ms (text).
	refreshEnforcedSQL = `SELECT pg_backend_pid(), set_config('idle_session_timeout', $1, false)`

	// refreshRecordSQL also records the new TTL: $1 key id, $2 TTL in ms,
	// $3 owner.
	refreshRecordSQL = `WITH u AS (
	UPDATE dlock_holders SET ttl_ms = $2 WHERE key_id = $1 AND owner = $3
)
SELECT pg_backend_pid(), set_config('idle_session_timeout', $2::text, false)`

	// releaseSQL: $1 key id. It does not check the backend: an unlock on
	// another backend would answer false (not held), and the check costs
	// about 1% of a loopback cycle.
	releaseSQL = `SELECT pg_advisory_unlock($1)`

	// releaseEnforcedSQL also clears idle_session_timeout, for the
	// session's reuse: $1 key id.
	releaseEnforcedSQL = `SELECT pg_advisory_unlock($1), set_config('idle_session_timeout', '0', false)`

	// inspectSQL finds the backend that holds the advisory lock on $1 in
	// this database (a bigint key is classid = high 32 bits, objid = low
	// 32 bits, objsubid = 1) and the holder row that backend wrote.
	inspectSQL = `SELECT h.owner, h.token, h.ttl_ms,
	CASE WHEN a.state = 'idle' THEN
		GREATEST(0, h.ttl_ms - (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::bigint)
	ELSE h.ttl_ms END
FROM pg_locks l
LEFT JOIN dlock_holders h ON h.key_id = $1 AND h.pid = l.pid
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND l.classid = (($1::bigint >> 32) & 4294967295)::oid
	AND l.objid = ($1::bigint & 4294967295)::oid
LIMIT 1`
)

// listSQL finds the recorded holders, in namespace $1 and with a key that
// starts with $2, whose backend holds the advisory lock of their key id in
// this database now (see inspectSQL).
const listSQL = `SELECT h.key, h.owner, h.token,
	CASE WHEN a.state = 'idle' THEN
		GREATEST(0, h.ttl_ms - (extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::bigint)
	ELSE h.ttl_ms END
FROM dlock_holders h
JOIN pg_locks l ON l.pid = h.pid AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND l.classid = ((h.key_id >> 32) & 4294967295)::oid
	AND l.objid = (h.key_id & 4294967295)::oid
LEFT JOIN pg_stat_activity a ON a.pid = h.pid
WHERE h.ns = $1::bytea AND h.key IS NOT NULL AND substr(h.key, 1, length($2::bytea)) = $2::bytea`

// The names of the statements every session prepares when it opens.
const (
	stmtAcquire = "dlock_acquire"
	stmtRefresh = "dlock_refresh"
	stmtRelease = "dlock_release"
)

// statements returns the SQL of each prepared statement for a mode.
func statements(o Options) map[string]string {
	m := map[string]string{stmtAcquire: acquireSQL, stmtRefresh: refreshSQL, stmtRelease: releaseSQL}
	switch {
	case o.RecordHolders:
		m[stmtAcquire] = acquireRecordSQL
	case o.EnforceTTL:
		m[stmtAcquire] = acquireEnforcedSQL
	}
	if o.EnforceTTL {
		m[stmtRefresh] = refreshEnforcedSQL
		if o.RecordHolders {
			m[stmtRefresh] = refreshRecordSQL
		}
		m[stmtRelease] = releaseEnforcedSQL
	}
	return m
}

// ErrNotMigrated means the sequence or table the store needs does not exist
// (see [Migrate] and [Options.SkipMigrate]).
var ErrNotMigrated = errors.New("pglock: dlock_fence, dlock_holders or dlock_once missing: run pglock.Migrate")

// Migrate creates, if missing, the sequence dlock_fence (fencing tokens), the
// unlogged table dlock_holders (who holds what, for inspection) and the table
// dlock_once (completion records, see [Records]) in the first schema of the
// connection's search_path. It is safe to run
// concurrently and repeatedly. [New] runs it unless [Options.SkipMigrate] is
// set.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if pool == nil {
		return lock.ErrNilDatabaseClient
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Concurrent CREATE … IF NOT EXISTS can fail on the catalog's
		// unique indexes; serialize. The two-int4 form lives in a space of
		// its own (objsubid 2) and never meets a key id.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(1684828003, 1)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, migrateSQL, pgx.QueryExecModeSimpleProtocol)
		return err
	})
	if err != nil {
		return fmt.Errorf("pglock: migrate: %w", err)
	}
	return check(ctx, pool)
}

// check verifies that the objects exist and that the sequence has no cache.
func check(ctx context.Context, pool *pgxpool.Pool) error {
	var cache int64
	var table bool
	err := pool.QueryRow(ctx, checkSQL, pgx.QueryExecModeSimpleProtocol).Scan(&cache, &table)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotMigrated
	case err != nil:
		return fmt.Errorf("pglock: check schema: %w", err)
	case !table:
		return ErrNotMigrated
	case cache != 1:
		return fmt.Errorf("pglock: sequence dlock_fence has CACHE %d; fencing tokens need CACHE 1", cache)
	}
	return nil
}
