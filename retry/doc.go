// Package retry waits for a held lock: it retries [lock.Locker.Acquire]
// with exponential backoff and full jitter until the lock is acquired, a
// limit is reached, or the context ends.
//
// The atom never waits — [lock.Locker.Acquire] makes one attempt and
// reports a held key as [lock.ErrLockNotAcquired]. Waiting is this
// package's job alone: [Acquire] waits once, and [Wrap] returns a
// [Locker] whose Acquire waits, so that code written against
// [lock.Locker] (lock.Do, the other layers) waits without knowing it.
//
// # The schedule
//
// The n-th wait is drawn uniformly from [0, c(n)], where c(1) is
// [Options.InitialInterval], each next c is [Options.Multiplier] times the
// one before, and no c exceeds [Options.MaxInterval] ("full jitter": many
// waiters spread out over the whole interval instead of waking together).
// The ceilings come from a [backoff.ExponentialBackOff] without its own
// randomisation; every call builds its own, so nothing mutable is shared
// between calls or goroutines.
//
// By default only [lock.ErrLockNotAcquired] is retried. Store failures are
// retried when [Options.RetryStoreErrors] is set; errors that cannot go
// away by waiting ([lock.ErrEmptyKey], [lock.ErrKeyTooLong],
// [lock.ErrInvalidTTL], [lock.ErrClosed], [lock.ErrNilConfig],
// [lock.ErrNilDatabaseClient]) never are.
//
// # Waiting for a release instead of polling
//
// When the Locker implements [lock.Waiter] (Lockers from lock.New do, and
// forward to the store's lock/driver Waiter: a memlock release, an etcd
// watch, a PostgreSQL notification), a busy key is waited for with
// WaitFree, bounded by the current interval's ceiling c(n), instead of a
// sleep: the attempt follows the release at once, and a missed wake-up
// costs at most one interval. Up to three WaitFree calls in a row may
// return early and be followed by another refusal (waiters racing for one
// release, one wins); after that, one ordinary jittered sleep follows, so a
// store whose wait returns at once cannot turn waiting into a busy loop. Stores that cannot wait report [errors.ErrUnsupported], and
// Acquire falls back to sleeping.
//
// # Contexts and limits
//
// Acquire returns as soon as ctx ends, with an error that wraps both
// ctx's error (and its cause, see [context.Cause]) and the last attempt's
// error: errors.Is finds [context.DeadlineExceeded] and
// [lock.ErrLockNotAcquired] in the same error. An attempt that ctx
// interrupts never leaves a lock behind: the Locker from lock.New releases
// an acquisition whose outcome is unknown in the background (its Close
// waits for that). [Options.MaxAttempts] and [Options.MaxElapsedTime]
// bound the waiting without a context; when they run out, the error wraps
// the last attempt's error.
//
// # What is not promised
//
// Waiting is not fair: a waiter that arrived first is not served first,
// and under heavy contention a waiter may keep losing until its limit.
// Acquire does not refresh or release anything; the Lock it returns is the
// wrapped Locker's own.
package retry
