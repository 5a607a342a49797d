package pglock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dlockgo/dlock/lock"
)

// Records keeps the completion records and fences of package once in the
// table dlock_once, one row per (namespace, key); it implements once.Store.
// Every method is one atomic statement on the pool (no dedicated session).
// Records survive restarts as any table row does. It is safe for concurrent
// use.
type Records struct {
	pool *pgxpool.Pool
	ns   []byte
}

// NewRecords returns the completion records on pool, in opts.Namespace
// (other options are ignored). It creates the table (see [Migrate]) unless
// opts.SkipMigrate is set. A nil pool returns [lock.ErrNilDatabaseClient].
func NewRecords(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Records, error) {
	o, err := prepare(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	return &Records{pool: pool, ns: []byte(o.Namespace)}, nil
}

// Tokens are uint64; columns are bigint. Flipping the top bit maps one onto
// the other and keeps the order.
func encToken(t uint64) int64 { return int64(t ^ 1<<63) }
func decToken(v int64) uint64 { return uint64(v) ^ 1<<63 }

// retentionMS is the retention in whole milliseconds, rounded up; 0 means
// forever.
func retentionMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return min(int64((d+time.Millisecond-1)/time.Millisecond), math.MaxInt64/2)
}

const (
	// A row whose expires_at has passed counts as absent.
	beginSQL = `INSERT INTO dlock_once AS o (ns, key, fence, done, by_token, expires_at)
VALUES ($1, $2, $3, false, $4,
	CASE WHEN $5::bigint > 0 THEN clock_timestamp() + $5::bigint * interval '1 millisecond' END)
ON CONFLICT (ns, key) DO UPDATE SET
	fence = CASE
		WHEN o.expires_at <= clock_timestamp() THEN excluded.fence
		WHEN o.done THEN o.fence
		ELSE GREATEST(o.fence, excluded.fence) END,
	done = o.done AND NOT coalesce(o.expires_at <= clock_timestamp(), false),
	by_token = CASE WHEN o.expires_at <= clock_timestamp() THEN excluded.by_token ELSE o.by_token END,
	expires_at = CASE
		WHEN o.done AND NOT coalesce(o.expires_at <= clock_timestamp(), false) THEN o.expires_at
		ELSE excluded.expires_at END
RETURNING done, by_token`

	completeSQL = `UPDATE dlock_once SET done = true, by_token = $3,
	expires_at = CASE WHEN $4::bigint > 0 THEN clock_timestamp() + $4::bigint * interval '1 millisecond' END
WHERE ns = $1 AND key = $2 AND NOT done AND fence = $3
	AND (expires_at IS NULL OR expires_at > clock_timestamp())`

	doneSQL = `SELECT done, by_token FROM dlock_once
WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > clock_timestamp())`
)

// Begin implements once.Store.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	var done bool
	var by int64
	err := r.pool.QueryRow(ctx, beginSQL, r.ns, []byte(key), encToken(token), encToken(0), retentionMS(retention)).Scan(&done, &by)
	if err != nil {
		return false, 0, fmt.Errorf("pglock: records: begin %s: %w", lock.QuoteKey(key), err)
	}
	if !done {
		return false, 0, nil
	}
	return true, decToken(by), nil
}

// Complete implements once.Store.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	tag, err := r.pool.Exec(ctx, completeSQL, r.ns, []byte(key), encToken(token), retentionMS(retention))
	if err != nil {
		return false, fmt.Errorf("pglock: records: complete %s: %w", lock.QuoteKey(key), err)
	}
	return tag.RowsAffected() == 1, nil
}

// Done implements once.Store.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	var done bool
	var by int64
	err := r.pool.QueryRow(ctx, doneSQL, r.ns, []byte(key)).Scan(&done, &by)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("pglock: records: done %s: %w", lock.QuoteKey(key), err)
	}
	if !done {
		return false, 0, nil
	}
	return true, decToken(by), nil
}
