// Package driver defines the contract a lock store implements.
//
// Users never program against this package: they hold a [lock.Locker], which
// [lock.New] builds from a [Backend]. Everything the stores have in common —
// key and TTL validation, owner tokens, closed state, error wrapping, the
// clean-up of an ambiguous acquisition — is written once in package lock, so a
// Backend only speaks to its store.
//
// # One attempt, contention is a result
//
// Every method makes exactly one attempt and never retries or waits for a
// lock to become free; waiting is the job of package retry. A method reports
// the store's answer in its ok result and reserves err for a store that failed
// to answer:
//
//   - ok == false, err == nil: the store answered, and the answer is "someone
//     else holds the key" (TryAcquire) or "owner does not hold the key any
//     more" (Refresh, Release).
//   - err != nil: the store failed, timed out, or ctx ended. The outcome is
//     unknown: the operation may or may not have been applied. ok is ignored.
//
// A Backend must never turn a store failure into ok == false, and must keep
// ctx's error in the chain (errors.Is(err, context.Canceled) and friends) when
// ctx ended the call.
//
// # Arguments
//
// key is any non-empty byte string (already validated by package lock, at
// most [lock.MaxKeyLength] bytes; it may hold NUL and invalid UTF-8). owner is
// an opaque string, unique for each acquisition, made of 32 lowercase
// hexadecimal digits optionally followed by a colon and an identity of at
// most 256 bytes; a store compares it as a whole and keeps it with the lock.
// ttl is positive; a store that cannot represent it rounds it up and reports
// the TTL it actually granted.
//
// # Optional capabilities
//
// A store that can do more implements one of the small interfaces below. Code
// that wants the capability finds it by type assertion, as database/sql does
// with its driver's optional interfaces. Every store in this module checks
// its conformance at compile time.
package driver

import (
	"context"
	"time"
)

// Backend is one lock store. Its methods are safe for concurrent use.
type Backend interface {
	// TryAcquire makes one attempt to take key for owner for ttl. When the
	// key is free (never taken, released, or expired) it records owner and
	// returns ok == true with a fencing token that is strictly larger than
	// every token the store has handed out for key before, and the TTL it
	// granted (at least ttl). When another owner holds the key it returns
	// ok == false and a nil error.
	//
	// If TryAcquire returns an error, the caller cannot know whether the
	// lock was taken; package lock then releases owner's claim in the
	// background, so Release must accept an owner that was never granted.
	TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (g Grant, ok bool, err error)

	// Refresh extends owner's hold on key to ttl from now, and reports the
	// TTL granted. It returns ok == false when owner does not hold key (it
	// expired, was released, or the store lost it).
	Refresh(ctx context.Context, key, owner string, ttl time.Duration) (granted time.Duration, ok bool, err error)

	// Release frees key if owner holds it. It returns ok == false when owner
	// did not hold key; it never frees a key that another owner holds.
	Release(ctx context.Context, key, owner string) (ok bool, err error)

	// Ping checks that the store answers.
	Ping(ctx context.Context) error

	// Close frees the resources the Backend owns (connections it opened,
	// background goroutines). It does not close clients that the user passed
	// in. After Close every method may fail.
	Close() error
}

// Grant describes a successful acquisition.
type Grant struct {
	// Token is the fencing token: strictly larger than every earlier token
	// for the same key in this store. Never zero.
	Token uint64
	// TTL is the time to live the store granted, at least the one asked for.
	TTL time.Duration
}

// LossNotifier is implemented by stores that learn of a lost lock before the
// holder's next refresh — a dead PostgreSQL session, an etcd lease that could
// not be kept alive, a deleted key.
type LossNotifier interface {
	// NotifyLoss returns a channel that is closed as soon as the store knows
	// that owner no longer holds key. The store stops watching when ctx ends;
	// the channel may then stay open forever. A store that cannot watch this
	// particular lock returns nil.
	NotifyLoss(ctx context.Context, key, owner string) <-chan struct{}
}

// Holder describes who holds a key, as reported by an [Inspector].
type Holder struct {
	// Owner is the owner string the holder acquired with.
	Owner string
	// Token is the holder's fencing token.
	Token uint64
	// TTL is the time the lock has left, as the store sees it. Zero when the
	// store does not enforce a TTL.
	TTL time.Duration
}

// Inspector is implemented by stores that can tell who holds a key.
type Inspector interface {
	// Inspect reports the current holder of key. ok is false when the key is
	// free.
	Inspect(ctx context.Context, key string) (h Holder, ok bool, err error)
}

// Waiter is implemented by stores that can wait for a key to be released
// instead of being polled (a watch, a notification channel).
type Waiter interface {
	// WaitFree blocks until key looks free, ctx ends, or the store gives up
	// (returning nil early is allowed: the caller tries again). It does not
	// acquire anything; a caller must still call TryAcquire, which may lose
	// the race.
	WaitFree(ctx context.Context, key string) error
}

// Lister is implemented by stores that can enumerate the keys held in them,
// for operators' tools (dlock ls).
type Lister interface {
	// List calls fn for every key that is held now and starts with
	// prefix ("" for all), in no particular order, until fn returns false
	// or every key has been reported. It is a snapshot in motion: a key
	// acquired or released during the call may or may not be reported,
	// and a key is never reported twice. A store that cannot list (or not
	// in its current configuration) returns an error wrapping
	// errors.ErrUnsupported.
	List(ctx context.Context, prefix string, fn func(key string, h Holder) bool) error
}
