package lock

import (
	"context"
	"time"
)

// Locker hands out locks by key. It is the type users program against; every
// store provides one (memlock.New, redislock.New, pglock.New, etcdlock.New,
// zklock.New, dynamolock.New), and layers such as retry and otellock wrap
// one.
//
// A Locker is safe for concurrent use. Two goroutines that share a Locker
// are two different holders: the second Acquire of a held key is refused.
type Locker interface {
	// Acquire tries once to take key for ttl. It never waits for a held key:
	// when another holder has it, the error wraps [ErrLockNotAcquired] (see
	// package retry to wait). A store failure is returned as itself, never
	// as ErrLockNotAcquired. Other errors: [ErrEmptyKey], [ErrKeyTooLong],
	// [ErrInvalidTTL], [ErrClosed], and ctx's error when ctx ended (the
	// lock is then not held, or is released in the background). A grant
	// whose answer arrives after its TTL could have run out (a reply held
	// up on the network, a stalled process) is released in the background
	// and reported as an error wrapping [ErrLockNotHeld]: another holder
	// may already have the key.
	Acquire(ctx context.Context, key string, ttl time.Duration) (Lock, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the resources of the Locker. Locks still held are not
	// released by Close; they expire after their TTL. Close returns
	// [ErrClosed] when called again.
	Close() error
}

// Lock is one held lock. It is safe for concurrent use, but a held lock is
// normally used by one goroutine, or kept alive by [Hold].
type Lock interface {
	// Key returns the key the lock was acquired for.
	Key() string
	// TTL returns the time to live the store last granted; a store may
	// round the requested TTL up.
	TTL() time.Duration
	// Token returns the fencing token: strictly larger than the token of
	// every earlier holder of the same key. Pass it with every write the
	// lock protects and have the resource refuse writes with a smaller
	// token than it has seen (see the package documentation).
	Token() uint64
	// Release frees the lock. It returns an error wrapping [ErrLockNotHeld]
	// when the lock was not held any more (released before, expired, or
	// lost), and [ErrClosed] after the Locker was closed.
	Release(ctx context.Context) error
	// Refresh extends the lock to ttl from now. It returns an error wrapping
	// [ErrLockNotHeld] when the lock was not held any more, and
	// [ErrInvalidTTL] for a TTL that is not positive.
	Refresh(ctx context.Context, ttl time.Duration) error
}

// Expirer is implemented by locks that know the local time up to which the
// store has promised them the key: the start of the last successful acquire
// or refresh plus the TTL granted then. [Hold] uses it. Locks made by [New]
// implement it; wrappers should forward it.
type Expirer interface {
	// Expiry returns the local time at which the store's promise runs
	// out, on this process's monotonic clock.
	Expiry() time.Time
}

// LossNotifier is implemented by locks whose store can report a lost lock
// before the next refresh would (a dead database session, a lease that
// could not be kept alive). Locks made by [New] implement it; wrappers
// should forward it.
type LossNotifier interface {
	// NotifyLoss returns a channel that is closed when the store reports
	// that the lock is lost, or nil when the store cannot tell. Watching
	// stops when ctx ends.
	NotifyLoss(ctx context.Context) <-chan struct{}
}

// Waiter is implemented by Lockers that can block until a held key looks
// free instead of being polled; package retry uses it to wait for a release.
// Lockers made by [New] implement it and return an error wrapping
// [errors.ErrUnsupported] when their store cannot wait (see the lock/driver
// package's Waiter); wrappers should forward it.
type Waiter interface {
	// WaitFree blocks until key looks free, ctx ends, or the store gives up
	// early: a nil error only means "try to acquire now", and the attempt
	// may still lose the race. It acquires nothing.
	WaitFree(ctx context.Context, key string) error
}

// Inspector is implemented by Lockers that can tell who holds a key.
// Lockers made by [New] implement it and return an error wrapping
// [errors.ErrUnsupported] when their store cannot inspect (see the
// lock/driver package's Inspector); wrappers should forward it.
type Inspector interface {
	// Inspect reports the current holder of key; ok is false when the key
	// is free.
	Inspect(ctx context.Context, key string) (h Holder, ok bool, err error)
}

// Lister is implemented by Lockers that can enumerate the keys held in
// their store. Lockers made by [New] implement it and return an error
// wrapping [errors.ErrUnsupported] when their store cannot list (see the
// lock/driver package's Lister); wrappers should forward it.
type Lister interface {
	// List calls fn for every key that is held now and starts with
	// prefix ("" for all), in no particular order, until fn returns
	// false. Keys acquired or released during the call may or may not be
	// reported.
	List(ctx context.Context, prefix string, fn func(key string, h Holder) bool) error
}

// Holder describes who holds a key, as reported by an [Inspector].
type Holder struct {
	// Identity is the holder's identity (see [Options.Identity] and
	// [WithIdentity]), or "" when it gave none.
	Identity string
	// Token is the holder's fencing token.
	Token uint64
	// TTL is the time the lock has left as the store sees it; zero when
	// the store does not enforce TTLs.
	TTL time.Duration
}
