package pglock

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrTransactionPooling means the pool reaches PostgreSQL through a pooler
// (such as PgBouncer) in transaction or statement mode. Session advisory
// locks cannot work there: two clients can share one server session and both
// "hold" a lock, and an unlock can run on another session than the lock.
// Connect pglock directly to PostgreSQL, or through a pooler in session mode.
var ErrTransactionPooling = errors.New("pglock: the pool reaches PostgreSQL through transaction or statement pooling (e.g. PgBouncer pool_mode=transaction); session advisory locks need a direct connection or session pooling")

// probe opens the Backend's first two sessions and checks them for a
// pooler: it asks session A for its server backend, then B, then A again.
// Directly, or through a session pooler, A keeps its backend and B has
// another. Under transaction pooling a client has a backend only during a
// transaction, so B usually gets A's backend (the pooler reuses the idle
// one) or A comes back on another. The check cannot see a pooler that happens
// to behave like a session one here; refreshes and the health check
// therefore also check the backend of their session ([ErrSessionMoved]).
//
// The connections are hijacked from the pool, so a pool of one connection
// is enough.
func (b *Backend) probe(ctx context.Context) ([]*session, error) {
	a, pa, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	c, pc, err := b.connect(ctx)
	if err != nil {
		closeConn(a)
		return nil, err
	}
	var again int32
	err = a.QueryRow(ctx, `SELECT pg_backend_pid()`, pgx.QueryExecModeSimpleProtocol).Scan(&again)
	switch {
	case err != nil:
		err = fmt.Errorf("pglock: check pooling: %w", err)
	case pa == pc || pa != again:
		err = fmt.Errorf("%w (backends %d, %d, %d)", ErrTransactionPooling, pa, pc, again)
	}
	if err != nil {
		closeConn(a)
		closeConn(c)
		return nil, err
	}
	sa, err := b.newSession(ctx, a, pa)
	if err != nil {
		closeConn(c)
		return nil, err
	}
	sc, err := b.newSession(ctx, c, pc)
	if err != nil {
		sa.close()
		return nil, err
	}
	return []*session{sa, sc}, nil
}
