package once

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

// Store keeps completion records and fences, one per key. Implementations
// must make each method atomic. They are provided by the stores:
// memlock.Store.Records, redislock.NewRecords, pglock.NewRecords,
// etcdlock.NewRecords, zklock.NewRecords, dynamolock.NewRecords.
type Store interface {
	// Begin reports whether key has a completion record (done, and the
	// token of the run that wrote it). When it has none, Begin raises key's
	// fence to token (it never lowers it) before returning done == false.
	// retention, when positive, is how long the fence and the record are
	// kept.
	Begin(ctx context.Context, key string, token uint64, retention time.Duration) (done bool, by uint64, err error)
	// Complete writes key's completion record for the run with token, only
	// if key has no record and its fence is still token. ok == false means
	// a later run raised the fence, or key was already complete.
	Complete(ctx context.Context, key string, token uint64, retention time.Duration) (ok bool, err error)
	// Done reports whether key has a completion record, without changing
	// anything.
	Done(ctx context.Context, key string) (done bool, by uint64, err error)
}

// Options configure [Do]. The zero value, and nil, mean the defaults.
type Options struct {
	// TTL is the TTL of the key's lock, kept alive by [lock.Hold] while the
	// job runs; after a crash, another caller can run the job after it.
	// Default: 30s.
	TTL time.Duration
	// NoWait makes a caller that finds the job running elsewhere return
	// [Busy] at once instead of waiting for the outcome.
	NoWait bool
	// Retry configures the wait for the lock. Default: retry's defaults,
	// until ctx ends.
	Retry *retry.Options
	// Retention, when positive, is how long completion records and fences
	// are kept; a key may run again after it. Default: forever.
	Retention time.Duration
	// KeyPrefix is put before key to make the lock's key. Default:
	// "once/".
	KeyPrefix string
}

// State says what [Do] did.
type State int

const (
	// Ran means this call ran the job to completion and recorded it.
	Ran State = iota + 1
	// AlreadyDone means the job had been completed before (by this caller
	// or another); it was not run.
	AlreadyDone
	// Busy means another caller was running the job and [Options.NoWait]
	// was set; it was not run here.
	Busy
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Ran:
		return "ran"
	case AlreadyDone:
		return "already done"
	case Busy:
		return "busy"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Result describes the outcome of [Do].
type Result struct {
	// State says whether the job ran here, had run before, or was busy.
	State State
	// Token is the fencing token of the run that completed the job (Ran
	// and AlreadyDone), or zero.
	Token uint64
}

// ErrFencedOut means the job ran to its end here, but its completion
// record was refused because a later run took over the key (this run had
// lost its lock). The job's side effects may have happened twice: that is
// what fencing them with the token prevents.
var ErrFencedOut = errors.New("once: fenced out by a later run")

// Do runs fn for key unless key's job was completed before, so that across
// every caller sharing store at most one run completes (see the package
// documentation for what that means). fn runs under a context held by
// [lock.Hold] — cancelled, with a cause wrapping [lock.ErrLockNotHeld],
// when the lock is lost — and gets the lock's fencing token.
//
// Do returns fn's error when fn fails (no record is written; a later call
// runs the job again), [ErrFencedOut] when a later run took over, ctx's
// error when ctx ends while waiting, and store errors as they are.
func Do(ctx context.Context, locker lock.Locker, store Store, key string, fn func(ctx context.Context, token uint64) error, opts *Options) (Result, error) {
	if locker == nil || store == nil {
		return Result{}, lock.ErrNilDatabaseClient
	}
	if fn == nil {
		return Result{}, fmt.Errorf("once: %w: nil func", lock.ErrNilConfig)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TTL < 0 || o.Retention < 0 {
		return Result{}, fmt.Errorf("once: %w: negative TTL or Retention", lock.ErrInvalidTTL)
	}
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "once/"
	}
	if err := lock.ValidateKey(key); err != nil {
		return Result{}, fmt.Errorf("once: %w", err)
	}

	// Fast path: most calls for a finished job need one read.
	if done, by, err := store.Done(ctx, key); err != nil {
		return Result{}, fmt.Errorf("once %s: %w", lock.QuoteKey(key), err)
	} else if done {
		return Result{State: AlreadyDone, Token: by}, nil
	}

	var lk lock.Lock
	var err error
	if o.NoWait {
		lk, err = locker.Acquire(ctx, o.KeyPrefix+key, o.TTL)
		if errors.Is(err, lock.ErrLockNotAcquired) {
			return Result{State: Busy}, nil
		}
	} else {
		lk, err = retry.Acquire(ctx, locker, o.KeyPrefix+key, o.TTL, o.Retry)
	}
	if err != nil {
		return Result{}, err
	}
	held, stop := lock.Hold(ctx, lk, nil)
	defer stop()

	token := lk.Token()
	done, by, err := store.Begin(held, key, token, o.Retention)
	if err != nil {
		return Result{}, fmt.Errorf("once %s: %w", lock.QuoteKey(key), err)
	}
	if done {
		return Result{State: AlreadyDone, Token: by}, nil
	}
	if err := fn(held, token); err != nil {
		return Result{}, err
	}
	// Complete even if the lock was lost meanwhile: the fence, not the
	// lock, decides whether this run is still the latest.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ok, err := store.Complete(cctx, key, token, o.Retention)
	if err != nil {
		return Result{}, fmt.Errorf("once %s: recording completion: %w", lock.QuoteKey(key), err)
	}
	if !ok {
		return Result{}, fmt.Errorf("once %s: token %d: %w", lock.QuoteKey(key), token, ErrFencedOut)
	}
	return Result{State: Ran, Token: token}, nil
}
