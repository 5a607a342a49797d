package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/lock"
)

// Locker is a [lock.Locker] whose Acquire waits for a held key as
// [Acquire] does. Ping and Close go to the wrapped Locker, and so do
// WaitFree ([lock.Waiter]) and Inspect ([lock.Inspector]). Locks are the wrapped Locker's own. A Locker
// is safe for concurrent use: each Acquire keeps its own backoff.
type Locker struct {
	l lock.Locker
	c config
}

var (
	_ lock.Locker    = (*Locker)(nil)
	_ lock.Waiter    = (*Locker)(nil)
	_ lock.Inspector = (*Locker)(nil)
)

// Wrap returns a Locker that waits on l with opts (nil means the
// defaults). It panics when l is nil or opts are invalid, as both are
// programming errors.
func Wrap(l lock.Locker, opts *Options) *Locker {
	if l == nil {
		panic("retry: Wrap of a nil Locker")
	}
	c, err := opts.config()
	if err != nil {
		panic(err.Error())
	}
	return &Locker{l: l, c: c}
}

// Acquire implements [lock.Locker]: it waits for key as [Acquire] does.
func (r *Locker) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	return r.c.acquire(ctx, r.l, key, ttl)
}

// Ping implements [lock.Locker] by calling the wrapped Locker.
func (r *Locker) Ping(ctx context.Context) error { return r.l.Ping(ctx) }

// Close implements [lock.Locker]: it closes the wrapped Locker.
func (r *Locker) Close() error { return r.l.Close() }

// WaitFree implements [lock.Waiter] by calling the wrapped Locker's, and
// returns an error wrapping [errors.ErrUnsupported] when it has none.
func (r *Locker) WaitFree(ctx context.Context, key string) error {
	if w, ok := r.l.(lock.Waiter); ok {
		return w.WaitFree(ctx, key)
	}
	return fmt.Errorf("wait %s: %w", lock.QuoteKey(key), errors.ErrUnsupported)
}

// Inspect implements [lock.Inspector] by calling the wrapped Locker's, and
// returns an error wrapping [errors.ErrUnsupported] when it has none.
func (r *Locker) Inspect(ctx context.Context, key string) (lock.Holder, bool, error) {
	if in, ok := r.l.(lock.Inspector); ok {
		return in.Inspect(ctx, key)
	}
	return lock.Holder{}, false, fmt.Errorf("inspect %s: %w", lock.QuoteKey(key), errors.ErrUnsupported)
}
