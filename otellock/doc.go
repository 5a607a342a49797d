// Package otellock adds OpenTelemetry spans and metrics to any
// [lock.Locker].
//
// [Wrap] returns a Locker that traces every Acquire, and every Refresh and
// Release of the locks it hands out, and records metrics about them. It
// decorates the Locker users already hold, so it works the same over every
// store and every layer: wrap a retry.Locker to see one acquire span per
// wait, or wrap the store's Locker and pass it to retry.Wrap to see one
// span per attempt.
//
// # Spans
//
// dlock.acquire, dlock.refresh and dlock.release, of kind client, children
// of the span in the call's context (a store client's own instrumentation
// nests below them). Attributes:
//
//   - dlock.store: [Options.Store], when set;
//   - dlock.key or dlock.key.hash, per [Options.Key] (default: hashed);
//   - dlock.outcome: acquired, contended or error (acquire); refreshed,
//     not_held or error (refresh); released, not_held or error (release);
//   - dlock.token: the fencing token, once known (as an int64);
//   - error.type on errors: canceled, deadline_exceeded, closed,
//     invalid_argument or store.
//
// Contention is not an error: a contended acquire ends with an unset
// status. An error sets the span status to Error with the error's message,
// in which the key is replaced by "<key>" unless the policy is [KeyRaw].
//
// # Metrics
//
//   - dlock.acquire.duration (histogram, s): time of each Acquire, by
//     dlock.outcome (and error.type).
//   - dlock.acquisitions (counter, {acquisition}): Acquire calls by
//     dlock.outcome (and error.type).
//   - dlock.hold.duration (histogram, s): from the return of a successful
//     Acquire to the end of the hold, by how it ended (dlock.outcome:
//     released, lost or error).
//   - dlock.locks.held (asynchronous up-down counter, {lock}): locks
//     acquired and not yet ended, observed at each collection (so holding
//     costs an atomic add, not two measurements). Lockers with the same
//     dlock.store add up; a closed Locker stops reporting.
//   - dlock.locks.lost (counter, {lock}): locks found not held by a
//     Refresh or Release that expected them.
//
// Every metric carries dlock.store when it is set, and never the key (its
// cardinality is unbounded). A hold ends at the first Release (whatever its
// result: the caller gives the lock up) or at the first Refresh that
// reports [lock.ErrLockNotHeld]. A lock that is abandoned without Release
// stays counted in dlock.locks.held.
//
// # Providers and state
//
// The tracer and meter providers come from [Options]; nil means the otel
// globals, read once by Wrap. Instruments are created once per Wrap. The
// package keeps no state of its own.
//
// The wrapped locks forward [lock.Expirer] and [lock.LossNotifier], so
// [lock.Hold] keeps working through the wrapper, and the wrapped Locker
// forwards [lock.Waiter], so package retry can still wait for a release,
// and [lock.Inspector].
package otellock
