package pglock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dlockgo/dlock/lock"
)

// maxWait bounds one WaitFree: the server gives up after it and WaitFree
// returns nil, so that a caller's loop looks at the key again.
const maxWait = 5 * time.Second

// waitSQL queues for a shared transaction-level advisory lock on the key's
// id, which the server grants the moment the exclusive holder lets go, and
// which the end of the statement releases at once. lock_timeout, set for
// this statement only, bounds the wait. $1 key id, $2 timeout in ms (text).
const waitSQL = `SELECT set_config('lock_timeout', $2, true), pg_advisory_xact_lock_shared($1)`

// WaitFree implements [driver.Waiter] with the server's own lock queue, so
// that releases pay nothing for waiters: it asks, on a connection of the
// pool, for a shared lock on key's id, which is granted as soon as the key
// is free, and dropped again at the end of the statement. It returns nil
// when the key looked free, or after at most 5s (the caller then tries
// again), and ctx's error when ctx ends. Each waiting call holds a
// connection of the pool.
//
// While the shared lock is granted — the length of one statement's end on
// the server — another process's TryAcquire of the key can be refused.
func (b *Backend) WaitFree(ctx context.Context, key string) error {
	wait := maxWait
	if dl, ok := ctx.Deadline(); ok {
		// Let the server end the wait before ctx does: cancelling a
		// statement closes its connection.
		wait = min(wait, time.Until(dl)-20*time.Millisecond)
	}
	if wait < time.Millisecond {
		<-ctx.Done()
		return ctx.Err()
	}
	id := KeyID(b.opts.Namespace, key)
	_, err := b.pool.Exec(ctx, waitSQL, id, strconv.FormatInt(int64(wait/time.Millisecond), 10))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available: timed out
		return nil
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return errors.Join(fmt.Errorf("pglock: wait for %s: %w", lock.QuoteKey(key), err), ctx.Err())
	default:
		return fmt.Errorf("pglock: wait for %s: %w", lock.QuoteKey(key), err)
	}
}
