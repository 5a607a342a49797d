package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// HoldOptions configure [Hold]. The zero value, and nil, mean the defaults.
type HoldOptions struct {
	// Interval is the time between refreshes. Default: a third of the
	// lock's TTL. It is capped at half of TTL − Margin, so that at least
	// two refreshes are tried before the lock could expire.
	Interval time.Duration
	// Margin is the safety margin: the held context is cancelled when no
	// refresh has succeeded for TTL − Margin since the start of the last
	// successful acquire or refresh. It absorbs clock-rate differences
	// between this process and the store and the time to stop work.
	// Default: a fifth of the TTL; capped at half of it.
	Margin time.Duration
	// ReleaseTimeout bounds the release done by the stop function.
	// Default: 5s.
	ReleaseTimeout time.Duration
}

// Hold keeps lk alive by refreshing it in the background, and returns a
// context, derived from ctx, that is cancelled the moment ownership can no
// longer be guaranteed:
//
//   - a refresh reports that the lock is not held any more;
//   - the store reports the loss (see [LossNotifier]);
//   - no refresh has succeeded within TTL − Margin of the start of the last
//     successful acquire or refresh (see [Expirer]), because the store is
//     slow or unreachable — also while a refresh is still waiting for an
//     answer, and before Hold returns when that point has already passed.
//
// The context's cause (see [context.Cause]) then wraps [ErrLockNotHeld] and
// says which of these happened. The context also carries the lock's fencing
// token (see [TokenFrom]). Run the work that the lock protects under
// this context, and stop writing when it is done.
//
// stop ends the keepalive, waits for its goroutine, and releases the lock
// (under [context.WithoutCancel] of ctx, bounded by ReleaseTimeout, so it
// runs even when ctx has ended). It returns the release's error, which
// wraps [ErrLockNotHeld] when the lock had been lost. stop may be called
// more than once; later calls return the first call's result. Call it when
// the work is done, typically with defer.
//
// When ctx ends, the keepalive stops but the lock is kept until stop is
// called.
func Hold(ctx context.Context, lk Lock, opts *HoldOptions) (held context.Context, stop func() error) {
	var o HoldOptions
	if opts != nil {
		o = *opts
	}
	ttl := lk.TTL()
	if o.Margin <= 0 {
		o.Margin = ttl / 5
	}
	o.Margin = min(o.Margin, ttl/2)
	if o.Interval <= 0 {
		o.Interval = ttl / 3
	}
	o.Interval = max(min(o.Interval, (ttl-o.Margin)/2), time.Millisecond)
	if o.ReleaseTimeout <= 0 {
		o.ReleaseTimeout = defaultCleanupTimeout
	}

	held, cancel := context.WithCancelCause(context.WithValue(ctx, tokenKey{}, lk.Token()))
	k := &keeper{lk: lk, ttl: ttl, opts: o, cancel: cancel, done: make(chan struct{})}
	if e, ok := lk.(Expirer); ok {
		k.expiry = e.Expiry()
	} else {
		k.expiry = time.Now().Add(ttl)
	}
	// A lock already past its deadline (a grant that came late) is
	// reported before held is handed out, not by the goroutine a moment
	// later: the caller's first write must see it.
	if !time.Now().Before(k.expiry.Add(-o.Margin)) {
		cancel(k.expired(nil))
	}
	var lost <-chan struct{}
	if n, ok := lk.(LossNotifier); ok {
		lost = n.NotifyLoss(held)
	}
	go k.run(held, lost)

	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel(errStopped)
			<-k.done
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), o.ReleaseTimeout)
			defer rcancel()
			err = lk.Release(rctx)
		})
		return err
	}
	return held, stop
}

type tokenKey struct{}

// TokenFrom returns the fencing token of the lock held for ctx, for contexts
// made by [Hold] (and so by [Do] and by every layer that runs user code under
// a lock), and false for other contexts.
func TokenFrom(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tokenKey{}).(uint64)
	return t, ok
}

// errStopped is the cause of a held context whose stop function was called.
var errStopped = errors.New("lock: hold stopped")

type keeper struct {
	lk     Lock
	ttl    time.Duration
	opts   HoldOptions
	cancel context.CancelCauseFunc
	done   chan struct{}
	expiry time.Time // store's promise: start of last success + TTL granted
}

func (k *keeper) run(ctx context.Context, lost <-chan struct{}) {
	defer close(k.done)
	var lastErr error
	next := time.Now().Add(k.opts.Interval)
	for {
		deadline := k.expiry.Add(-k.opts.Margin)
		now := time.Now()
		if !now.Before(deadline) {
			k.cancel(k.expired(lastErr))
			return
		}
		wait := time.NewTimer(min(next.Sub(now), deadline.Sub(now)))
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-lost:
			wait.Stop()
			k.cancel(fmt.Errorf("%w: the store reported the lock lost", ErrLockNotHeld))
			return
		case <-wait.C:
		}
		if time.Now().Before(next) {
			continue // woken by the deadline: the loop top decides
		}

		start := time.Now()
		rctx, rcancel := context.WithDeadline(ctx, deadline)
		// A refresh that has not returned by the deadline must not hold
		// the cancellation back: a store client that ignores rctx (a
		// statement waiting on a connection gone silent) would keep the
		// holder working past the point where the store may free the lock.
		prevErr := lastErr
		late := context.AfterFunc(rctx, func() {
			if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
				k.cancel(k.expired(prevErr))
			}
		})
		err := k.lk.Refresh(rctx, k.ttl)
		late()
		rcancel()
		switch {
		case err == nil:
			lastErr = nil
			if e, ok := k.lk.(Expirer); ok {
				k.expiry = e.Expiry()
			} else {
				k.expiry = start.Add(k.lk.TTL())
			}
			next = start.Add(k.opts.Interval)
		case errors.Is(err, ErrLockNotHeld), errors.Is(err, ErrClosed):
			k.cancel(fmt.Errorf("%w: refresh: %w", ErrLockNotHeld, err))
			return
		case ctx.Err() != nil:
			return
		default:
			// A store failure: try again soon, several times before the
			// deadline, each attempt bounded by the deadline itself.
			lastErr = err
			next = time.Now().Add(max(min(k.opts.Interval, time.Until(deadline)/3), time.Millisecond))
		}
	}
}

func (k *keeper) expired(lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("%w: no refresh succeeded within TTL − margin (%v − %v): %w",
			ErrLockNotHeld, k.ttl, k.opts.Margin, lastErr)
	}
	return fmt.Errorf("%w: no refresh succeeded within TTL − margin (%v − %v)",
		ErrLockNotHeld, k.ttl, k.opts.Margin)
}

// Do acquires key once (it does not wait: see package retry for that), runs
// fn under a context held by [Hold], and releases the lock when fn returns
// or panics.
//
// Do returns [ErrLockNotAcquired] (wrapped) when another holder has key,
// without running fn. Otherwise it returns fn's error, joined with an error
// wrapping [ErrLockNotHeld] when the lock was lost while fn ran (fn's
// context was then cancelled, and fn may have overlapped with another
// holder), and with the release's error.
func Do(ctx context.Context, l Locker, key string, ttl time.Duration, fn func(ctx context.Context) error) (err error) {
	lk, err := l.Acquire(ctx, key, ttl)
	if err != nil {
		return err
	}
	held, stop := Hold(ctx, lk, nil)
	defer func() {
		var lost error
		if cause := context.Cause(held); errors.Is(cause, ErrLockNotHeld) {
			lost = cause
		}
		relErr := stop()
		if lost != nil && errors.Is(relErr, ErrLockNotHeld) {
			relErr = nil // the loss already says it
		}
		err = errors.Join(err, lost, relErr)
	}()
	return fn(held)
}
