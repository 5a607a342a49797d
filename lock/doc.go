// Package lock is dlock's atom: a pessimistic, TTL-bounded mutual-exclusion
// lock, handed out by key by a [Locker], with a fencing token on every
// acquisition.
//
// Users hold a Locker from one of the stores (backends/memlock in process,
// backends/redislock, backends/pglock, backends/etcdlock) or from
// backends.Open, and a [Lock] per acquisition. A store implements the small
// contract in package lock/driver; [New] wraps it in the Locker that every
// store shares, so validation, owner tokens, errors and clean-up behave the
// same everywhere.
//
// # What a lock promises
//
//  1. Mutual exclusion: at most one live Lock per key, for as long as the
//     store can vouch for it.
//  2. Ownership: only the Lock that acquired a key can refresh or release
//     it. Two goroutines sharing one Locker are two different holders.
//  3. Fencing: [Lock.Token] is strictly larger for every successive holder
//     of a key (across store restarts where the store can guarantee it;
//     each store's documentation says).
//  4. TTL: a lock that is not refreshed is freed by the store after its TTL
//     (stores whose TTL is only advisory say so).
//  5. Cancellation: a cancelled context makes a call return promptly, and
//     an acquisition whose outcome is unknown (ctx ended, or the store
//     failed to answer) is released in the background, so no lock is left
//     behind that its caller got no handle for.
//
// # What a lock cannot promise
//
// A lease-based lock is only as good as the holder's knowledge of time. A
// holder can be paused — a garbage-collection stop, a swapped-out or
// SIGSTOPped process, a virtual machine migrated — for longer than its TTL,
// then wake up still believing it holds the lock while the store has given
// it to someone else. A store's clock can jump, a replicated store can fail
// over to a replica that never saw the lock. No amount of care in the lock
// library prevents this: the holder does not run while it is paused.
//
// Two things in this package narrow and close the gap:
//
//   - [Hold] refreshes the lock and cancels the context your work runs
//     under the moment ownership can no longer be guaranteed: a refresh
//     said "not held", the store pushed a loss, or no refresh succeeded
//     within TTL minus a safety margin of the start of the last successful
//     one (measured on this process's monotonic clock, from before the
//     request was sent, so network delay only makes it more cautious). Work
//     that checks its context stops in time — unless it is paused.
//
//   - Fencing tokens close the gap for writes. Send [Lock.Token] with every
//     write the lock protects, and let the resource refuse a write whose
//     token is smaller than the largest it has accepted:
//
//     UPDATE accounts SET balance = $1, fence = $2 WHERE id = $3 AND fence < $2
//
//     A paused holder that wakes up carries an old token; its write is
//     rejected even though it still believes it holds the lock.
//
// Use the lock to avoid doing work twice and to keep contention cheap; use
// the token wherever a duplicate write would be wrong.
//
// # Errors
//
// Errors are wrapped with the operation and the key; compare them with
// [errors.Is] against the sentinels [ErrLockNotAcquired], [ErrLockNotHeld],
// [ErrInvalidTTL], [ErrEmptyKey], [ErrKeyTooLong], [ErrNilConfig],
// [ErrNilDatabaseClient] and [ErrClosed]. A store failure is never reported
// as ErrLockNotAcquired, and when a context ended a call its error stays in
// the chain (errors.Is(err, context.Canceled)).
//
// # Waiting
//
// Acquire tries once. To wait for a held key, use package retry, which
// retries with backoff until a deadline.
package lock
