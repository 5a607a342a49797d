package pglock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrTransactionPooling means the pool reaches PostgreSQL through a pooler
// (such as PgBouncer) in transaction or statement mode. Session advisory
// locks cannot work there: two clients can share one server session and both
// "hold" a lock, and an unlock can run on another session than the lock.
// Connect pglock directly to PostgreSQL, or through a pooler in session mode.
var ErrTransactionPooling = errors.New("pglock: the pool reaches PostgreSQL through transaction or statement pooling (e.g. PgBouncer pool_mode=transaction); session advisory locks need a direct connection or session pooling")

// detectPooling holds two connections of the pool at once and asks each
// for its server backend: A, then B, then A again. Directly, or through a
// session pooler, A keeps its backend and B has another. Under transaction
// pooling a client has a backend only during a transaction, so B usually
// gets A's backend (the pooler reuses the idle one) or A comes back on
// another. The check cannot see a pooler that happens to behave like a
// session one here; every statement of a dedicated session therefore also
// checks its backend ([ErrSessionMoved]).
func detectPooling(ctx context.Context, pool *pgxpool.Pool) error {
	a, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pglock: check pooling: %w", err)
	}
	defer a.Release()
	bc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pglock: check pooling: %w", err)
	}
	defer bc.Release()
	pid := func(c *pgxpool.Conn) (int32, error) {
		var p int32
		// Simple protocol: a transaction pooler may not carry prepared
		// statements from one transaction to the next.
		err := c.QueryRow(ctx, `SELECT pg_backend_pid()`, pgx.QueryExecModeSimpleProtocol).Scan(&p)
		return p, err
	}
	var p [3]int32
	for i, c := range []*pgxpool.Conn{a, bc, a} {
		if p[i], err = pid(c); err != nil {
			return fmt.Errorf("pglock: check pooling: %w", err)
		}
	}
	if p[0] == p[1] || p[0] != p[2] {
		return fmt.Errorf("%w (backends %d, %d, %d)", ErrTransactionPooling, p[0], p[1], p[2])
	}
	return nil
}
