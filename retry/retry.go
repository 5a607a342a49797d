package retry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/dlockgo/dlock/lock"
)

// Options configure [Acquire] and [Wrap]. The zero value, and nil, mean the
// defaults. Options are read, never written: one value may be shared.
type Options struct {
	// InitialInterval is the ceiling of the first wait. Default: 20ms.
	InitialInterval time.Duration
	// Multiplier is the factor between successive ceilings; at least 1.
	// Default: 2.
	Multiplier float64
	// MaxInterval caps the ceiling of every wait. Default: 2s, or
	// InitialInterval when that is larger.
	MaxInterval time.Duration
	// MaxElapsedTime bounds the time spent waiting: no attempt starts
	// after it, and a wait that would end after it is shortened so that a
	// last attempt is made at the limit. An attempt that has started runs
	// to its end (bound it with ctx). Default: no limit.
	MaxElapsedTime time.Duration
	// MaxAttempts bounds the number of attempts, the first one included.
	// Default: no limit.
	MaxAttempts int
	// RetryStoreErrors makes store failures (errors that are not lock
	// sentinels) retried like [lock.ErrLockNotAcquired]. Default: a store
	// failure is returned at once.
	RetryStoreErrors bool
	// Logger receives a debug record for every retry. Default: nil,
	// silent.
	Logger *slog.Logger

	// rand returns a uniform value in [0, n); tests set it. Default:
	// math/rand/v2's Int64N.
	rand func(n int64) int64
}

// Defaults of [Options].
const (
	DefaultInitialInterval = 20 * time.Millisecond
	DefaultMultiplier      = 2.0
	DefaultMaxInterval     = 2 * time.Second
)

// config is Options validated, with defaults filled in.
type config struct {
	Options
}

func (opts *Options) config() (config, error) {
	var c config
	if opts != nil {
		c.Options = *opts
	}
	o := &c.Options
	switch {
	case o.InitialInterval < 0:
		return c, fmt.Errorf("retry: negative InitialInterval %v", o.InitialInterval)
	case o.MaxInterval < 0:
		return c, fmt.Errorf("retry: negative MaxInterval %v", o.MaxInterval)
	case o.MaxElapsedTime < 0:
		return c, fmt.Errorf("retry: negative MaxElapsedTime %v", o.MaxElapsedTime)
	case o.MaxAttempts < 0:
		return c, fmt.Errorf("retry: negative MaxAttempts %d", o.MaxAttempts)
	case o.Multiplier != 0 && !(o.Multiplier >= 1): // also NaN
		return c, fmt.Errorf("retry: Multiplier %v is less than 1", o.Multiplier)
	case o.InitialInterval > 0 && o.MaxInterval > 0 && o.MaxInterval < o.InitialInterval:
		return c, fmt.Errorf("retry: MaxInterval %v is less than InitialInterval %v", o.MaxInterval, o.InitialInterval)
	}
	if o.InitialInterval == 0 {
		o.InitialInterval = DefaultInitialInterval
	}
	if o.Multiplier == 0 {
		o.Multiplier = DefaultMultiplier
	}
	if o.MaxInterval == 0 {
		o.MaxInterval = max(DefaultMaxInterval, o.InitialInterval)
	}
	if o.rand == nil {
		o.rand = rand.Int64N
	}
	return c, nil
}

// fullJitter is a [backoff.BackOff] with full jitter: NextBackOff draws
// each wait uniformly from [0, c], where c is the next interval of an
// exponential backoff without randomisation, capped at MaxInterval. (The
// ExponentialBackOff's own RandomizationFactor only spreads waits around c,
// never down to zero.) It is not safe for concurrent use: each Acquire
// makes its own.
type fullJitter struct {
	exp     *backoff.ExponentialBackOff
	rand    func(n int64) int64
	ceiling time.Duration // c behind the last NextBackOff
}

var _ backoff.BackOff = (*fullJitter)(nil)

func (c *config) newBackOff() *fullJitter {
	exp := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.InitialInterval),
		backoff.WithMultiplier(c.Multiplier),
		backoff.WithMaxInterval(c.MaxInterval),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxElapsedTime(0), // Acquire enforces its own limit
	)
	return &fullJitter{exp: exp, rand: c.rand}
}

// NextBackOff implements [backoff.BackOff].
func (j *fullJitter) NextBackOff() time.Duration {
	c := j.exp.NextBackOff()
	j.ceiling = c
	if c <= 0 {
		return c
	}
	return time.Duration(j.rand(int64(c) + 1))
}

// Reset implements [backoff.BackOff].
func (j *fullJitter) Reset() { j.exp.Reset() }

// Acquire acquires key from l for ttl, waiting while it is held: it retries
// with exponential backoff and full jitter (see the package documentation)
// until the lock is acquired, ctx ends, or a limit of opts is reached.
//
// When ctx ends, Acquire returns at once with an error that wraps ctx's
// error and the last attempt's error. When MaxAttempts or MaxElapsedTime
// run out, the error wraps the last attempt's error (so
// [lock.ErrLockNotAcquired] for a key that stayed busy). An error that is
// not retried is returned as the Locker returned it. A nil l is an error
// wrapping [lock.ErrNilConfig]; invalid opts are an error too.
func Acquire(ctx context.Context, l lock.Locker, key string, ttl time.Duration, opts *Options) (lock.Lock, error) {
	if l == nil {
		return nil, fmt.Errorf("retry: nil Locker: %w", lock.ErrNilConfig)
	}
	c, err := opts.config()
	if err != nil {
		return nil, err
	}
	return c.acquire(ctx, l, key, ttl)
}

func (c *config) acquire(ctx context.Context, l lock.Locker, key string, ttl time.Duration) (lock.Lock, error) {
	start := time.Now()
	w, _ := l.(lock.Waiter)
	var b *fullJitter // made at the first refusal: the uncontended path allocates nothing
	// early counts the WaitFree calls in a row that returned before their
	// bound and were followed by a refused attempt. A few are normal (two
	// waiters wake on one release; one loses), many in a row mean a wait
	// that returns at once: then one jittered sleep, so it cannot spin.
	early := 0
	for attempt := 1; ; attempt++ {
		lk, err := l.Acquire(ctx, key, ttl)
		if err == nil {
			return lk, nil
		}
		if ctx.Err() != nil {
			return nil, stopped(ctx, key, attempt, start, err)
		}
		if !c.retryable(err) {
			return nil, err
		}
		if c.MaxAttempts > 0 && attempt >= c.MaxAttempts {
			return nil, gaveUp(key, attempt, start, err)
		}
		if b == nil {
			b = c.newBackOff()
		}
		wait := b.NextBackOff()
		ceiling := b.ceiling
		if c.MaxElapsedTime > 0 {
			left := c.MaxElapsedTime - time.Since(start)
			if left <= 0 {
				return nil, gaveUp(key, attempt, start, err)
			}
			wait, ceiling = min(wait, left), min(ceiling, left)
		}
		busy := errors.Is(err, lock.ErrLockNotAcquired)
		fast := w != nil && busy && early < maxEarlyWakes
		if c.Logger != nil {
			c.Logger.DebugContext(ctx, "dlock: retrying acquire",
				slog.String("key", lock.QuoteKey(key)), slog.Int("attempt", attempt),
				slog.Duration("wait", wait), slog.Bool("wait_for_release", fast), slog.Any("err", err))
		}
		if !fast {
			early = 0
		}
		if fast {
			wctx, cancel := context.WithTimeout(ctx, ceiling)
			werr := w.WaitFree(wctx, key)
			timedOut := wctx.Err() != nil
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil, stopped(ctx, key, attempt, start, err)
			case werr == nil:
				if timedOut {
					early = 0
				} else {
					early++
				}
				continue
			case timedOut:
				continue
			case errors.Is(werr, errors.ErrUnsupported):
				w = nil // for the rest of this call
			}
			// The wait failed: sleep instead, as if there were no waiter.
		}
		if !sleep(ctx, wait) {
			return nil, stopped(ctx, key, attempt, start, err)
		}
	}
}

// maxEarlyWakes bounds the early returns from WaitFree in a row before a
// jittered sleep.
const maxEarlyWakes = 3

// sleep waits for d or until ctx ends; it reports whether ctx is still
// alive.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryable reports whether an attempt's error may go away by waiting.
func (c *config) retryable(err error) bool {
	if errors.Is(err, lock.ErrLockNotAcquired) {
		return true
	}
	if !c.RetryStoreErrors {
		return false
	}
	for _, permanent := range [...]error{
		lock.ErrEmptyKey, lock.ErrKeyTooLong, lock.ErrInvalidTTL, lock.ErrClosed,
		lock.ErrNilConfig, lock.ErrNilDatabaseClient,
	} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	return true
}

// stopError is the error of an Acquire that stopped without the lock. It
// wraps why it stopped (ctx's error and cause; nothing when a limit ran
// out) and the last attempt's error.
type stopError struct {
	key      string
	attempts int
	elapsed  time.Duration
	reasons  []error
	last     error
}

func stopped(ctx context.Context, key string, attempts int, start time.Time, last error) error {
	e := &stopError{key: key, attempts: attempts, elapsed: time.Since(start), last: last}
	e.reasons = append(e.reasons, ctx.Err())
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		e.reasons = append(e.reasons, cause)
	}
	return e
}

func gaveUp(key string, attempts int, start time.Time, last error) error {
	return &stopError{key: key, attempts: attempts, elapsed: time.Since(start), last: last}
}

func (e *stopError) Error() string {
	if len(e.reasons) == 0 {
		return fmt.Sprintf("retry: gave up on %s after %d attempt(s) in %v: %v",
			lock.QuoteKey(e.key), e.attempts, e.elapsed, e.last)
	}
	why := e.reasons[0].Error()
	if len(e.reasons) > 1 {
		why += " (" + e.reasons[1].Error() + ")"
	}
	return fmt.Sprintf("retry: stopped waiting for %s after %d attempt(s) in %v: %s; last attempt: %v",
		lock.QuoteKey(e.key), e.attempts, e.elapsed, why, e.last)
}

func (e *stopError) Unwrap() []error {
	return append(e.reasons[:len(e.reasons):len(e.reasons)], e.last)
}
